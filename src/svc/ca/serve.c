/*
 * mtls ca serve: the online CA. HTTPS (TLS 1.3, libmtls's server policy,
 * client certificates optional so that enrollment works without one),
 * JSON in and out.
 *
 * Connections run on the net runtime (src/svc/net): one event loop does
 * the accepts, the handshakes and the reading and writing, each
 * connection a coroutine with deadlines; the handlers that touch the CA
 * (every route but /healthz and /metrics) run on 16 worker threads
 * (net_offload), serialized by one mutex around the CA but for the wait
 * for a certificate's group commit (store.c). A
 * silent connection costs a struct and an fd until its first-byte
 * deadline (bench/RESULTS.md, "ca"), an address holds at most
 * --max-conns-per-ip, and at --max-conns the longest-idle connection is
 * closed for a new one. The TLS policy, verification and taxonomy are the
 * same libmtls code the proxy runs.
 *
 * Invariants (issue #4): a certificate is committed before its response
 * is written; a revocation is committed before it is acknowledged; a token
 * is burned in the same transaction as the certificate it pays for; a
 * refused request records nothing.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "ca/serve.h"
#include "net/addr.h"
#include "net/notify.h"

#define MAX_HEAD	(16 * 1024)
#define MAX_BODY	(64 * 1024)
#define SERVE_WORKERS	16	/* issuance takes no lock (the CA is read
				 * only); requests waiting for their group
				 * commit leave the others signing, to join
				 * the next batch */
#define DRAIN_MS	15000	/* SIGTERM: requests in hand finish by then */

#define PROBE_MS	2000	/* while not ready: a write probe this often */

static volatile sig_atomic_t stopping;
static int reload_fd = -1;	/* eventfd: SIGHUP asks the renewer */

static struct net_loop *volatile stop_loop;

static void
on_signal(int sig)
{
	if (sig == SIGHUP) {
		uint64_t one = 1;
		ssize_t w = 0;

		if (reload_fd >= 0)	/* a full counter: one is pending */
			w = write(reload_fd, &one, sizeof(one));
		(void)w;
		return;
	}
	stopping = 1;
	notify_send("STOPPING=1");	/* async-signal-safe */
	if (stop_loop != NULL)
		net_loop_stop(stop_loop);	/* async-signal-safe */
}

/* ---- readiness: can we write (issue, revoke, renew our certificate) ---- */

/* Whether <e> is the disk refusing a write, rather than the request. */
int
serve_storage_fault(const struct mtls_error *e)
{
	return ca_fault_of(e) == CA_FAULT_STORAGE;
}

/* Records the outcome of a write: <e> NULL it worked (ready again), else
 * the storage fault that makes us not ready. Clients learn its kind
 * (e->kind, set where the store classified it), never the detail: a file
 * path, a database's host and port stay in the log line. Logs each change
 * once. */
void
serve_set_ready(struct server *s, const struct mtls_error *e)
{
	char cause[320] = "", pub[64] = "";
	const char *kind;
	int changed;
	json_t *lg;

	if (e != NULL) {
		/* not the store's (our own certificate's file): by errno */
		kind = e->kind != NULL ? e->kind : e->sys == ENOSPC ||
		    e->sys == EDQUOT ? STORE_KIND_DISK_FULL : e->sys == EROFS ?
		    STORE_KIND_READ_ONLY : STORE_KIND_IO;
		/* the log's cause: the kind, then the detail */
		if (strncmp(e->msg, kind, strlen(kind)) == 0)
			snprintf(cause, sizeof(cause), "%s", e->msg);
		else
			snprintf(cause, sizeof(cause), "%s: %s", kind, e->msg);
		snprintf(pub, sizeof(pub), "%s", kind);
	}
	pthread_mutex_lock(&s->ready_mu);
	changed = (s->not_ready[0] == '\0') != (pub[0] == '\0');
	snprintf(s->not_ready, sizeof(s->not_ready), "%s", pub);
	pthread_mutex_unlock(&s->ready_mu);
	if (!changed)
		return;
	lg = json_object();
	if (e != NULL)
		json_object_set_new(lg, "cause", esc_jstr(cause));
	log_emit(e != NULL ? "error" : "info", e != NULL ? "not_ready" :
	    "ready", lg);
	json_decref(lg);
}

/* While not ready, one small write every PROBE_MS tells when the disk has
 * room again (renewer thread). */
static void
probe_store(struct server *s, int64_t *next_ms)
{
	struct mtls_error err;
	int bad, rc;

	pthread_mutex_lock(&s->ready_mu);
	bad = s->not_ready[0] != '\0';
	pthread_mutex_unlock(&s->ready_mu);
	if (!bad || net_now_ms() < *next_ms)
		return;
	*next_ms = net_now_ms() + PROBE_MS;
	error_clear(&err);
	pthread_mutex_lock(&s->mu);
	rc = store_probe(s->ca->store, &err);
	pthread_mutex_unlock(&s->mu);
	if (rc == 0)
		serve_set_ready(s, NULL);
	else if (serve_storage_fault(&err))
		serve_set_ready(s, &err);
}

/* ---- CA snapshots: SIGHUP reloads the CA directory ---- */

struct ca *
serve_ca_hold(struct server *s)
{
	struct ca *ca;

	pthread_mutex_lock(&s->snap_mu);
	ca = s->ca;
	ca->refs++;
	pthread_mutex_unlock(&s->snap_mu);
	return ca;
}

void
serve_ca_release(struct server *s, struct ca *ca)
{
	int last;

	if (ca == NULL)
		return;
	pthread_mutex_lock(&s->snap_mu);
	last = --ca->refs == 0;
	pthread_mutex_unlock(&s->snap_mu);
	if (last)
		ca_close(ca);	/* borrows s->store: left open */
}

/* The rotation's counts for /metrics, at most every 2 s (renewer). */
static void
count_rotation(struct server *s, int64_t *next_ms, int now)
{
	struct rot_status rs;
	struct mtls_error err;
	int ok;

	if (!now && net_now_ms() < *next_ms)
		return;
	*next_ms = net_now_ms() + 2000;
	error_clear(&err);
	ok = rotation_status(s->ca, &rs, &err) == 0;	/* ours: no hold */
	pthread_mutex_lock(&s->rot_mu);
	if (ok)
		s->rot = rs;
	s->rot_ok = ok;
	pthread_mutex_unlock(&s->rot_mu);
}

void
serve_rotation_metrics(struct server *s, FILE *f)
{
	struct rot_status rs;
	int ok;

	pthread_mutex_lock(&s->rot_mu);
	rs = s->rot;
	ok = s->rot_ok;
	pthread_mutex_unlock(&s->rot_mu);
	if (!ok)
		return;
	fprintf(f, "# HELP mtls_ca_rotation_phase Root rotation phase: 0 "
	    "none, 1 prepared, 2 published, 3 switched, 4 retired.\n"
	    "# TYPE mtls_ca_rotation_phase gauge\n"
	    "mtls_ca_rotation_phase %d\n"
	    "# HELP mtls_ca_rotation_blocking_certs Unexpired, unrevoked "
	    "certificates that chain to the root being retired.\n"
	    "# TYPE mtls_ca_rotation_blocking_certs gauge\n"
	    "mtls_ca_rotation_blocking_certs %lld\n"
	    "# HELP mtls_ca_rotation_agents_on_old_bundle Agents whose last "
	    "reported bundle lacks the new root.\n"
	    "# TYPE mtls_ca_rotation_agents_on_old_bundle gauge\n"
	    "mtls_ca_rotation_agents_on_old_bundle %lld\n"
	    "# TYPE mtls_ca_rotation_agents gauge\n"
	    "mtls_ca_rotation_agents %lld\n"
	    "# TYPE mtls_ca_rotation_blocked gauge\n"
	    "mtls_ca_rotation_blocked %d\n", rs.st.phase,
	    (long long)rs.blocking_certs, (long long)rs.agents_old,
	    (long long)rs.agents_total, rs.blocked);
}

/*
 * In phase switched, the previous issuer's key (rotation/old.key), so
 * that OCSP and /v1/crl/previous answer for its leaves until retire. One
 * that does not load is an error line naming the file and the fix, and
 * ca serve goes on without it (those answers are then "unauthorized" and
 * 404, as after retire): issuance does not depend on it.
 */
static void
load_prev_key(struct server *s, struct ca *ca)
{
	struct mtls_error err;
	json_t *lg;

	error_clear(&err);
	if (ca_prev_key_load(ca, s->o->pass_file, &err) == 0) {
		if (ca->prev_signer != NULL) {
			lg = json_object();
			json_object_set_new(lg, "answers", json_string("ocsp, "
			    "/v1/crl/previous"));
			log_emit("info", "previous_issuer", lg);
			json_decref(lg);
		}
		return;
	}
	lg = json_object();
	json_object_set_new(lg, "error", esc_jstr(err.msg));
	json_object_set_new(lg, "fix", json_string("the previous issuer's "
	    "key (DIR/rotation/old.key, encrypted with the same --pass-file "
	    "as ca.key) must load for OCSP and /v1/crl/previous to answer "
	    "for its certificates until retire; fix it and reload"));
	log_emit("error", "previous_issuer_key", lg);
	json_decref(lg);
}

/*
 * SIGHUP (renewer thread, the only writer of s->ca): a complete new
 * snapshot of the CA directory, prepared for issuance, then one pointer
 * swapped; requests in flight finish with the snapshot they hold. A
 * directory that does not load leaves the old one serving. When the
 * issuing certificate changed (a rotation's switch), our TLS certificate
 * is issued anew under it and the one it replaces revoked (superseded),
 * so the old root's certificates drain; otherwise the TLS context is
 * rebuilt for the bundle as it is now.
 */
static void
reload(struct server *s)
{
	struct mtls_error err;
	struct ca *n = NULL, *old = s->ca;
	struct ca_result res;
	char gen[65] = "", prev_serial[48];
	int changed, already;
	json_t *lg = json_object();

	error_clear(&err);
	notify_send("RELOADING=1");
	if (ca_open_shared(&n, s->o->dir, s->o->pass_file, s->store,
	    &err) != 0 || ca_issue_prepare(n, &err) != 0) {
		ca_close(n);
		json_object_set_new(lg, "result", json_string("failed"));
		json_object_set_new(lg, "error", esc_jstr(err.msg));
		log_emit("error", "reload", lg);
		json_decref(lg);
		notify_send("READY=1");
		return;
	}
	n->refs = 1;		/* the server's */
	load_prev_key(s, n);
	changed = X509_cmp(old->cert, n->cert) != 0;
	pthread_mutex_lock(&s->snap_mu);
	s->ca = n;
	pthread_mutex_unlock(&s->snap_mu);
	pthread_mutex_lock(&s->mu);
	serve_crl_stale(s);	/* the next GET of a CRL signs anew */
	pthread_mutex_unlock(&s->mu);
	snprintf(prev_serial, sizeof(prev_serial), "%s", s->own_serial);
	if (serve_own_identity(s, !changed, &err) != 0) {
		json_object_set_new(lg, "server_cert_error", esc_jstr(err.msg));
		error_clear(&err);
	} else if (changed && strcmp(prev_serial, s->own_serial) != 0) {
		pthread_mutex_lock(&s->mu);
		if (ca_revoke(n, prev_serial, 4 /* superseded */, &res,
		    &already, &err) != 0)
			json_object_set_new(lg, "revoke_error",
			    esc_jstr(err.msg));
		pthread_mutex_unlock(&s->mu);
	}
	serve_ca_release(s, old);
	if (rotation_generation(n->bundle, gen) != 0)
		gen[0] = '\0';
	json_object_set_new(lg, "result", json_string("ok"));
	json_object_set_new(lg, "issuer_changed", json_boolean(changed));
	json_object_set_new(lg, "rotation", esc_jstr(rot_phase_names[
	    n->rot_phase]));
	json_object_set_new(lg, "bundle_gen", esc_jstr(gen));
	log_emit("info", "reload", lg);
	json_decref(lg);
	notify_send("READY=1");
}

/* Renews the server certificate at two thirds of its life; reloads the
 * CA directory on SIGHUP. */
static void *
renewer(void *arg)
{
	struct server *s = arg;
	struct mtls_error err;
	int64_t next_probe = 0, next_rot = 0;
	struct pollfd pfd = { reload_fd, POLLIN, 0 };
	uint64_t v;
	json_t *o;

	while (!stopping) {
		probe_store(s, &next_probe);
		serve_own_recheck(s);	/* started with the store down */
		count_rotation(s, &next_rot, 0);
		int64_t now = (int64_t)time(NULL);
		int64_t due = s->own_not_before + (s->own_not_after -
		    s->own_not_before) * 2 / 3;

		if (now >= due) {
			error_clear(&err);
			o = json_object();
			if (serve_own_identity(s, 0, &err) == 0) {
				json_object_set_new(o, "not_after",
				    json_integer(s->own_not_after));
				log_emit("info", "server_cert_renewed", o);
			} else {
				json_object_set_new(o, "error",
				    esc_jstr(err.msg));
				log_emit("error", "server_cert_renew_failed", o);
				if (serve_storage_fault(&err))
					serve_set_ready(s, &err);
			}
			json_decref(o);
		}
		if (poll(&pfd, 1, 1000) == 1 && read(reload_fd, &v,
		    sizeof(v)) == sizeof(v) && !stopping) {
			reload(s);
			count_rotation(s, &next_rot, 1);
		}
	}
	return NULL;
}

/*
 * Reads one request into <req>: 1 a request, 0 the peer closed cleanly
 * between requests (or idled out, or the loop closed us), -1 a refused
 * request (req->status). The first request must be whole by
 * <first_deadline> (accept + --request-timeout: handshake, head and body
 * together); a later one may start within --idle-timeout and must then be
 * whole within --request-timeout of its first byte.
 */
static int
read_request(struct conn *c, struct http_req *req, int64_t first_deadline)
{
	const struct ca_serve_opts *o = c->s->o;
	int64_t deadline = first_deadline ? first_deadline : net_now_ms() +
	    o->idle_ms;
	size_t used;
	long r;
	int started = c->have > 0 || first_deadline, rc;

	if (c->have > 0 && !first_deadline)	/* pipelined: it started */
		deadline = net_now_ms() + o->request_ms;
	for (;;) {
		if (c->have > 0) {
			rc = http_req_feed(req, c->buf, c->have, &used);
			memmove(c->buf, c->buf + used, c->have - used);
			c->have -= used;
			if (rc != 0)
				return rc;
		}
		r = net_read(c->nc, c->t, c->buf + c->have, sizeof(c->buf) -
		    c->have, deadline);
		if (r > 0) {
			if (!started)
				deadline = net_now_ms() + o->request_ms;
			started = 1;
			c->have += (size_t)r;
			continue;
		}
		if (r == NET_TIMEOUT && started && (c->have > 0 ||
		    req->head_bytes > 0)) {
			req->status = 408;
			return -1;
		}
		if (r == NET_TIMEOUT && first_deadline)	/* TLS, no request */
			__atomic_add_fetch(&c->s->m_hs_timeouts, 1,
			    __ATOMIC_RELAXED);
		if (r < 0)
			return 0;	/* idle, evicted, or a broken link */
		if (c->have == 0 && req->head_bytes == 0)
			return 0;
		return http_req_feed(req, NULL, 0, &used);
	}
}

/* Before an enrollment or a renewal, for the rotation's count: the bundle
 * generation the agent will hold, recorded with the certificate's row in
 * its transaction (the answer's identity, its notAfter: store_add_issued).
 * A renewal reports it (Mtls-Bundle, 64 lower hex; anything else is
 * logged and ignored); an enrollment holds what this answer hands out,
 * the current bundle: an agent that has not renewed yet still counts, so
 * a switch is not called safe while it lacks the new root. <held>: room
 * for the enrollment's. */
static void
note_bundle(struct conn *c, const struct http_req *req, struct reply *rp,
    int enrolled, char held[65])
{
	const char *gen = http_req_header(req, "mtls-bundle");
	json_t *lg;

	if (enrolled) {
		if (rotation_generation(rp->ca->bundle, held) != 0)
			return;
		gen = held;
	} else if (gen == NULL)
		return;
	if (!rotation_gen_valid(gen)) {
		lg = json_object();
		json_object_set_new(lg, "client", esc_jstr(c->client));
		json_object_set_new(lg, "why", json_string("Mtls-Bundle is not "
		    "64 lower-case hex digits"));
		log_emit("warn", "bundle_report_refused", lg);
		json_decref(lg);
		return;
	}
	rp->bundle_gen = gen;
}

/* GET /v1/rotation (an --admin client): the rotation's status, counted
 * now. */
static void
serve_rotation(struct server *s, struct conn *c, struct reply *rp)
{
	struct rot_status rs;
	struct mtls_error err;

	/* admin data, like the inventory's (serve_ui.c) */
	rp->headers = "Cache-Control: no-store\r\n"
	    "X-Content-Type-Options: nosniff\r\n";
	if (serve_admin(s, c, rp) != 0)
		return;
	error_clear(&err);
	if (rotation_status(rp->ca, &rs, &err) != 0) {
		if (serve_storage_fault(&err))
			serve_reply_unavailable(s, rp, "cannot count", &err);
		else
			serve_reply_error(rp, 500, "internal", "%s", err.msg);
		return;
	}
	serve_reply_json(rp, 200, rotation_status_json(&rs));
}

static void
route(struct server *s, struct conn *c, const struct http_req *req,
    struct reply *rp)
{
	char path[2048], held[65];
	int post = strcmp(req->method, "POST") == 0;
	int get = strcmp(req->method, "GET") == 0;

	http_req_path(req, path, sizeof(path));
	if (strcmp(path, "/v1/enroll") == 0)
		rp->route = R_ENROLL;
	else if (strcmp(path, "/v1/renew") == 0)
		rp->route = R_RENEW;
	else if (strcmp(path, "/v1/revoke") == 0)
		rp->route = R_REVOKE;
	else if (strcmp(path, "/v1/bundle") == 0)
		rp->route = R_BUNDLE;
	else if (strcmp(path, "/v1/crl") == 0 ||
	    strcmp(path, "/v1/crl/previous") == 0 ||
	    strcmp(path, "/v1/crl/all") == 0)
		rp->route = R_CRL;
	else if (strcmp(path, "/v1/ocsp") == 0 ||
	    strncmp(path, "/v1/ocsp/", 9) == 0)
		rp->route = R_OCSP;
	else if (strcmp(path, "/healthz") == 0)
		rp->route = R_HEALTH;
	else if (strcmp(path, "/readyz") == 0)
		rp->route = R_READY;
	else if (strcmp(path, "/metrics") == 0)
		rp->route = R_METRICS;
	else if (strncmp(path, "/ui", 3) == 0 || strncmp(path,
	    "/v1/inventory", 13) == 0)
		rp->route = R_UI;	/* serve_ui.c: its own 404s */
	else if (strcmp(path, "/v1/rotation") == 0)
		rp->route = R_ROTATION;
	else {
		rp->route = R_OTHER;
		serve_reply_error(rp, 404, "not_found", "no route %.200s",
		    path);
		return;
	}
	switch (rp->route) {
	case R_ENROLL:
	case R_RENEW:
	case R_REVOKE:
		if (!post)
			goto method;
		/* A browser marks every POST (Origin, Sec-Fetch-Site); agents
		 * and scripts send neither. A page of another site must not
		 * spend the client certificate a browser holds for /ui: a
		 * no-cors fetch with a Blob body has no Content-Type. */
		if (http_req_header(req, "origin") != NULL ||
		    http_req_header(req, "sec-fetch-site") != NULL) {
			serve_reply_error(rp, 403, "cross_origin", "a browser "
			    "request (Origin or Sec-Fetch-Site) cannot call "
			    "%s: use mtls, curl or a script", path);
			return;
		}
		if (rp->route == R_ENROLL) {
			note_bundle(c, req, rp, 1, held);
			serve_enroll(s, c, req, rp);
		} else if (rp->route == R_RENEW) {
			note_bundle(c, req, rp, 0, held);
			serve_renew(s, c, req, rp);
		} else
			serve_revoke(s, c, req, rp);
		return;
	case R_OCSP:
		if (!post && !get)
			goto method;
		serve_ocsp(s, req, path, rp);
		return;
	default:
		if (!get)
			goto method;
		if (rp->route == R_BUNDLE)
			serve_bundle(s, req, rp);
		else if (rp->route == R_CRL)
			serve_crl(s, rp, strcmp(path, "/v1/crl") == 0 ?
			    SERVE_CRL_CURRENT : strcmp(path,
			    "/v1/crl/all") == 0 ? SERVE_CRL_ALL :
			    SERVE_CRL_PREVIOUS);
		else if (rp->route == R_METRICS)
			serve_metrics(s, rp);
		else if (rp->route == R_READY)
			serve_ready(s, rp);
		else if (rp->route == R_UI)
			serve_ui(s, c, req, path, rp);
		else if (rp->route == R_ROTATION)
			serve_rotation(s, c, rp);
		else
			serve_reply_bytes(rp, "text/plain", "ok\n", 3);
		return;
	}
 method:
	serve_reply_error(rp, 405, "method_not_allowed",
	    "%s is not allowed on %s",
	    req->method, path);
}

static void
log_request(struct conn *c, const struct http_req *req, struct reply *rp,
    int64_t t0)
{
	json_t *o = json_object();
	char path[256];
	const char *id = mtls_peer_verified(c->t) ? mtls_peer_id(c->t) : NULL;

	http_req_path(req, path, sizeof(path));
	json_object_set_new(o, "client", esc_jstr(c->client));
	json_object_set_new(o, "peer_id", id ? esc_jstr(id) : json_null());
	json_object_set_new(o, "method", esc_jstr(req->method[0] ?
	    req->method : "-"));
	json_object_set_new(o, "path", esc_jstr(path));
	json_object_set_new(o, "status", json_integer(rp->status));
	if (rp->code != NULL)
		json_object_set_new(o, "code", esc_jstr(rp->code));
	json_object_set_new(o, "ms", json_integer(net_now_ms() - t0));
	if (rp->error[0])
		json_object_set_new(o, "error", esc_jstr(rp->error));
	log_emit(rp->status >= 500 ? "error" : rp->status >= 400 ? "warn" :
	    "info", "request", o);
	json_decref(o);
}

/* After refusing a request whose body is still arriving: stop writing,
 * then read and drop what comes for up to 2 s, so that closing does not
 * reset the connection before the client has read our answer (nginx's
 * lingering close). */
static void
lingering_close(struct conn *c)
{
	int64_t deadline = net_now_ms() + 2000;
	char sink[4096];
	size_t total = 0;
	long n;

	mtls_close(c->t);
	shutdown(c->fd, SHUT_WR);
	while (total < (4u << 20) && (n = net_read(c->nc, NULL, sink,
	    sizeof(sink), deadline)) > 0)
		total += (size_t)n;
}

struct job {
	struct server		*s;
	struct conn		*c;
	const struct http_req	*req;
	struct reply		*rp;
};

/* On a worker thread: the route, with its CA calls. */
static void
route_job(void *arg)
{
	struct job *j = arg;

	route(j->s, j->c, j->req, j->rp);
	ERR_clear_error();	/* this thread's queue, not the loop's */
}

/* One connection, in its coroutine (net_serve_fn). */
static void
serve_conn(struct net_conn *nc, void *arg)
{
	struct server *s = arg;
	struct conn *c;
	struct http_req req;
	struct reply rp;
	struct job j;
	int64_t first, t0;
	char *out, path[32];
	size_t out_len;
	int r, keep = 1, one = 1;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		return;
	c->s = s;
	c->nc = nc;
	c->fd = net_conn_fd(nc);
	addr_text(net_conn_addr(nc), c->client, sizeof(c->client));
	/* the handshake, the head and the body of the first request share
	 * one deadline from accept: a slow client cannot spend it twice */
	first = net_conn_accepted_ms(nc) + s->o->request_ms;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	pthread_mutex_lock(&s->tls_mu);
	r = mtls_accept_socket(s->tls, &c->t, c->fd);
	pthread_mutex_unlock(&s->tls_mu);
	if (r != 0)
		goto done;
	if ((r = net_handshake(nc, c->t, first)) != 0) {
		if (r == NET_TIMEOUT)
			__atomic_add_fetch(&s->m_hs_timeouts, 1,
			    __ATOMIC_RELAXED);
		goto done;	/* a failed handshake costs nothing */
	}
	while (keep && !net_stopping(nc)) {
		http_req_init(&req, MAX_HEAD, MAX_BODY);
		memset(&rp, 0, sizeof(rp));
		net_idle(nc, 1);
		r = read_request(c, &req, first);
		first = 0;
		t0 = net_now_ms();
		if (r == 0) {
			http_req_free(&req);
			break;
		}
		/* the snapshot of now: held before the wait, a connection
		 * idle across a reload was answered by the CA before it
		 * (the old issuer's CRL cached as /v1/crl after a switch) */
		rp.ca = serve_ca_hold(s);
		net_idle(nc, 0);	/* in a request: not closed for room */
		if (r < 0) {
			if (req.status == 408)
				__atomic_add_fetch(&s->m_hs_timeouts, 1,
				    __ATOMIC_RELAXED);
			serve_reply_error(&rp, req.status ? req.status : 400,
			    "bad_request", "%s", req.why ? req.why :
			    "request timed out");
			keep = 0;
		} else {
			http_req_path(&req, path, sizeof(path));
			if (strcmp(path, "/healthz") == 0 ||
			    strcmp(path, "/readyz") == 0 ||
			    strcmp(path, "/metrics") == 0)
				route(s, c, &req, &rp);	/* no CA call */
			else {
				j.s = s;
				j.c = c;
				j.req = &req;
				j.rp = &rp;
				net_offload(nc, route_job, &j);
			}
			keep = req.keep_alive;
		}
		__atomic_add_fetch(&s->m_req[rp.route][rp.status / 100 % 6], 1,
		    __ATOMIC_RELAXED);
		log_request(c, &req, &rp, t0);
		if (rp.body != NULL && http_response_h(&out, &out_len,
		    rp.status, rp.ctype, rp.headers, rp.body, rp.len,
		    keep) == 0) {
			if (net_write(nc, c->t, out, out_len, net_now_ms() +
			    s->o->request_ms) != 0)
				keep = 0;
			free(out);
		} else
			keep = 0;
		free(rp.body);
		serve_ca_release(s, rp.ca);
		http_req_free(&req);
		if (r < 0) {
			lingering_close(c);
			goto done;
		}
	}
	mtls_close(c->t);
 done:
	mtls_free(c->t);
	free(c);
	ERR_clear_error();
}

int
ca_serve(const struct ca_serve_opts *o, struct mtls_error *err)
{
	struct server s;
	struct sockaddr_storage ss;
	struct net_opts no;
	struct net_stats ns;
	socklen_t sl;
	pthread_t rth;
	struct sigaction sa;
	json_t *lg;
	int lfd = -1, one = 1, rv = -1, renewer_started = 0;

	memset(&s, 0, sizeof(s));
	s.o = o;
	pthread_mutex_init(&s.mu, NULL);
	pthread_mutex_init(&s.tls_mu, NULL);
	pthread_mutex_init(&s.ready_mu, NULL);
	/* a PostgreSQL store that is down: start, not ready, and wait */
	store_open_down_ok();
	pthread_mutex_init(&s.snap_mu, NULL);
	pthread_mutex_init(&s.rot_mu, NULL);
	/* prepared before any thread issues: issuance then only reads it */
	if (ca_open(&s.ca, o->dir, o->pass_file, err) != 0)
		goto out;
	s.store = s.ca->store;	/* the server's: snapshots borrow it */
	s.ca->store_borrowed = 1;
	s.ca->refs = 1;
	if (ca_issue_prepare(s.ca, err) != 0)
		goto out;
	load_prev_key(&s, s.ca);
	if ((reload_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) < 0) {
		error_set_errno(err, MTLS_ERR_IO, "eventfd");
		goto out;
	}
	snprintf(s.url, sizeof(s.url), "%s", o->url);
	snprintf(s.crl_url, sizeof(s.crl_url), "%s/v1/crl", s.url);
	snprintf(s.ocsp_url, sizeof(s.ocsp_url), "%s/v1/ocsp", s.url);
	if (addr_parse(o->listen, "--listen", &ss, &sl, err) != 0)
		goto out;
	if ((s.tls = mtls_server()) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (serve_own_identity(&s, 1, err) != 0)
		goto out;
	lfd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one,
	    sizeof(one)) != 0 || bind(lfd, (struct sockaddr *)&ss, sl) != 0 ||
	    listen(lfd, 4096) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "--listen %s", o->listen);
		goto out;
	}
	memset(&no, 0, sizeof(no));
	no.name = "ca-serve";
	no.max_conns = o->max_conns;
	no.max_per_ip = o->max_per_ip;
	no.first_byte_ms = o->first_byte_ms;
	no.workers = SERVE_WORKERS;
	no.drain_ms = DRAIN_MS;
	if (net_loop_new(&s.loop, &no, err) != 0)
		goto out;
	rv = net_listen(s.loop, lfd, serve_conn, &s, err);
	lfd = -1;		/* the loop's now */
	if (rv != 0)
		goto out;
	rv = -1;
	stop_loop = s.loop;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGHUP, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (pthread_create(&rth, NULL, renewer, &s) != 0) {
		error_set(err, MTLS_ERR_IO, "cannot start the renewer thread");
		goto out;
	}
	renewer_started = 1;
	lg = json_object();
	json_object_set_new(lg, "listen", esc_jstr(o->listen));
	json_object_set_new(lg, "url", esc_jstr(s.url));
	json_object_set_new(lg, "ca", esc_jstr(o->dir));
	json_object_set_new(lg, "server_not_after",
	    json_integer(s.own_not_after));
	net_loop_stats(s.loop, &ns);	/* max_conns as RLIMIT_NOFILE allows */
	json_object_set_new(lg, "max_conns", json_integer(ns.max_conns));
	json_object_set_new(lg, "max_conns_per_ip", json_integer(o->max_per_ip));
	log_emit("info", "start", lg);
	json_decref(lg);
	/* until SIGTERM; then idle connections close at once and requests
	 * in hand finish within DRAIN_MS */
	notify_init();
	if (!stopping) {
		notify_send("READY=1");	/* listening since net_listen */
		net_loop_run(s.loop);
	}
	rv = 0;
	lg = json_object();
	log_emit("info", "stop", lg);
	json_decref(lg);
 out:
	stopping = 1;
	if (renewer_started)
		pthread_join(rth, NULL);
	stop_loop = NULL;
	net_loop_free(s.loop);
	if (lfd >= 0)
		close(lfd);
	mtls_free(s.tls);
	OPENSSL_free(s.crl[0].der);
	OPENSSL_free(s.crl[1].der);
	if (s.ca != NULL)
		serve_ca_release(&s, s.ca);
	store_close(s.store);
	if (reload_fd >= 0)
		close(reload_fd);
	reload_fd = -1;
	return rv;
}
