/*
 * mtls ca serve: the online CA. HTTPS (TLS 1.3, libmtls's server policy,
 * client certificates optional so that enrollment works without one),
 * JSON in and out.
 *
 * Connections run on the net runtime (src/svc/net): one event loop does
 * the accepts, the handshakes and the reading and writing, each
 * connection a coroutine with deadlines; the handlers that touch the CA
 * (every route but /healthz and /metrics) run on two worker threads
 * (net_offload), serialized by one mutex around the CA anyway. The
 * thread-per-connection version stopped answering after 256 silent TCP
 * connections (issue 12 item 6); now a silent connection costs a struct
 * and an fd until its first-byte deadline, an address holds at most
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
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "ca/ca.h"
#include "http/http.h"
#include "net/net.h"
#include "proxy/proxy.h"

#define MAX_HEAD	(16 * 1024)
#define MAX_BODY	(64 * 1024)
#define SERVE_WORKERS	2	/* CA calls are serialized by s->mu anyway */
#define DRAIN_MS	15000	/* SIGTERM: requests in hand finish by then */

#define PROBE_MS	2000	/* while not ready: a write probe this often */

enum { R_ENROLL, R_RENEW, R_REVOKE, R_BUNDLE, R_CRL, R_OCSP, R_HEALTH,
    R_READY, R_METRICS, R_OTHER, R__COUNT };
static const char *route_names[R__COUNT] = { "enroll", "renew", "revoke",
    "bundle", "crl", "ocsp", "healthz", "readyz", "metrics", "other" };

struct server {
	const struct ca_serve_opts *o;
	struct ca		*ca;
	pthread_mutex_t		 mu;		/* the CA, its store, the CRL */
	struct mtls		*tls;		/* server context (swapped) */
	pthread_mutex_t		 tls_mu;
	int64_t			 own_not_after, own_not_before;
	char			 url[512], crl_url[600], ocsp_url[600];
	uint8_t			*crl;		/* cached DER */
	size_t			 crl_len;
	int64_t			 crl_made;
	struct net_loop		*loop;
	uint64_t		 m_req[R__COUNT][6];	/* by status class */
	uint64_t		 m_issued, m_renewed, m_revoked, m_ocsp;
	uint64_t		 m_hs_timeouts;	/* request_timeout closes */
	/* readiness: "" while the store commits, else why it cannot (the
	 * last failed write); cleared by the next write that works */
	pthread_mutex_t		 ready_mu;
	char			 not_ready[256];
};

static volatile sig_atomic_t stopping;
static struct net_loop *volatile stop_loop;

static void
on_signal(int sig)
{
	(void)sig;
	stopping = 1;
	if (stop_loop != NULL)
		net_loop_stop(stop_loop);	/* async-signal-safe */
}

static uint64_t
ld(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

/* ---- readiness: can we write (issue, revoke, renew our certificate) ---- */

/* Whether <e> is the disk refusing a write, rather than the request. */
static int
storage_fault(const struct mtls_error *e)
{
	return e->sys == ENOSPC || e->sys == EDQUOT || e->sys == EROFS ||
	    e->sys == EIO;
}

/* Records the outcome of a write: <e> NULL it worked (ready again), else
 * the storage fault that makes us not ready. Logs each change once. */
static void
set_ready(struct server *s, const struct mtls_error *e)
{
	char cause[256] = "";
	int changed;
	json_t *lg;

	if (e != NULL)
		snprintf(cause, sizeof(cause), "%s: %s", e->sys == ENOSPC ||
		    e->sys == EDQUOT ? "disk full" : e->sys == EROFS ?
		    "read-only file system" : "I/O error", e->msg);
	pthread_mutex_lock(&s->ready_mu);
	changed = (s->not_ready[0] == '\0') != (cause[0] == '\0');
	snprintf(s->not_ready, sizeof(s->not_ready), "%s", cause);
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
		set_ready(s, NULL);
	else if (storage_fault(&err))
		set_ready(s, &err);
}

/* ---- the server's own certificate, issued by this CA, renewed by it ---- */

/* Makes the TLS context serve <pem_path>/<key_path>, whose leaf is
 * <cert>. */
static int
own_install(struct server *s, const char *pem_path, const char *key_path,
    X509 *cert, struct mtls_error *err)
{
	struct mtls_config *cfg;
	int rv = -1;

	if ((cfg = mtls_config_new()) == NULL)
		return error_set(err, MTLS_ERR_NOMEM, "out of memory");
	if (mtls_config_set_identity_file(cfg, pem_path, key_path) != 0 ||
	    mtls_config_set_trust_file(cfg, s->o->bundle_path) != 0 ||
	    mtls_config_set_allow_any(cfg) != 0 ||
	    mtls_config_set_peer_optional(cfg) != 0 ||
	    mtls_config_set_purpose(cfg, MTLS_PURPOSE_CLIENT) != 0) {
		error_set(err, MTLS_ERR_ARG, "%s", mtls_config_error(cfg));
		goto out;
	}
	pthread_mutex_lock(&s->tls_mu);
	rv = mtls_configure(s->tls, cfg);
	if (rv != 0)
		error_set(err, MTLS_ERR_ARG, "%s", mtls_error(s->tls));
	pthread_mutex_unlock(&s->tls_mu);
	if (rv == 0) {
		s->own_not_before = asn1_time_unix(X509_get0_notBefore(cert));
		s->own_not_after = asn1_time_unix(X509_get0_notAfter(cert));
	}
 out:
	mtls_config_free(cfg);
	return rv;
}

/* Whether <leaf> names exactly <want> (a subject CN aside: ours copies the
 * first DNS name). */
static int
same_names(X509 *leaf, const struct ids *want)
{
	struct mtls_error e;
	struct ids got;
	size_t i, j, n = 0;
	int same = 1;

	if (ids_from_cert(leaf, &got, &e) != 0)
		return 0;
	for (i = 0; i < got.n && same; i++) {
		if (strncmp(got.v[i], "cn:", 3) == 0)
			continue;
		n++;
		for (j = 0; j < want->n; j++)
			if (strcmp(got.v[i], want->v[j]) == 0)
				break;
		same = j < want->n;
	}
	ids_free(&got);
	return same && n == want->n;
}

/*
 * At start: the certificate a previous run left in DIR/serve/, when it can
 * serve on (issue 18: 17 restarts made 17 inventory rows). 1 and *out (the
 * leaf) when it was issued by this CA's current key, is recorded and not
 * revoked, carries the CA-server EKU and exactly our names, matches its
 * key, is no longer-lived than --server-ttl asks, and has more than a third
 * of its life left (the renewer would replace it at two thirds anyway);
 * 0 otherwise, with the reason in <why>.
 */
static int
own_reusable(struct server *s, const char *pem_path, const char *key_path,
    X509 **out, char *why, size_t why_len)
{
	STACK_OF(X509) *chain = NULL;
	EVP_PKEY *key = NULL;
	struct mtls_error e;
	struct cert_rec rec;
	X509 *leaf;
	int64_t nb, na, now = (int64_t)time(NULL);
	int rc, ok = 0;

	*out = NULL;
	if (access(pem_path, F_OK) != 0 || access(key_path, F_OK) != 0) {
		snprintf(why, why_len, "none yet");
		return 0;
	}
	if (certs_load(pem_path, &chain, &e) != 0 ||
	    key_load(key_path, NULL, &key, &e) != 0) {
		snprintf(why, why_len, "%s", e.msg);
		goto out;
	}
	leaf = sk_X509_value(chain, 0);
	nb = asn1_time_unix(X509_get0_notBefore(leaf));
	na = asn1_time_unix(X509_get0_notAfter(leaf));
	pthread_mutex_lock(&s->mu);
	rc = ca_issued(s->ca, leaf, &rec, why, why_len, &e);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0)
		snprintf(why, why_len, "%s", e.msg);
	else if (rc > 0)
		;	/* why says it */
	else if (rec.revoked)
		snprintf(why, why_len, "revoked");
	else if (!profile_is_ca_server(leaf))
		snprintf(why, why_len, "no CA-server extended key usage");
	else if (!same_names(leaf, &s->o->names))
		snprintf(why, why_len, "other names than --dns/--ip ask");
	else if (X509_check_private_key(leaf, key) != 1)
		snprintf(why, why_len, "the key does not match");
	else if (na - nb > s->o->server_ttl + 600)
		snprintf(why, why_len, "longer-lived than --server-ttl");
	else if (now < nb || now >= nb + (na - nb) * 2 / 3)
		snprintf(why, why_len, "a third of its life or less left");
	else {
		*out = X509_dup(leaf);
		ok = *out != NULL;
	}
 out:
	ERR_clear_error();
	sk_X509_pop_free(chain, X509_free);
	EVP_PKEY_free(key);
	return ok;
}

/* Our TLS certificate: at start (<reuse>) the one in DIR/serve/ while it
 * is good, else a new one issued and recorded. */
static int
own_identity(struct server *s, int reuse, struct mtls_error *err)
{
	char dir[4200], pem_path[4300], key_path[4300], why[300];
	struct ca_result res;
	EVP_PKEY *key = NULL;
	X509 *cert = NULL;
	char *pem = NULL;
	json_t *lg;
	size_t len;
	int rv = -1;

	snprintf(dir, sizeof(dir), "%s/serve", s->ca->dir);
	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return error_set_errno(err, MTLS_ERR_IO, "%s", dir);
	snprintf(pem_path, sizeof(pem_path), "%s/server.pem", dir);
	snprintf(key_path, sizeof(key_path), "%s/server.key", dir);
	if (reuse) {
		if (own_reusable(s, pem_path, key_path, &cert, why,
		    sizeof(why)) && own_install(s, pem_path, key_path, cert,
		    err) == 0) {
			serial_hex(X509_get0_serialNumber(cert), res.serial,
			    sizeof(res.serial));
			lg = json_object();
			json_object_set_new(lg, "serial",
			    esc_jstr(res.serial));
			json_object_set_new(lg, "not_after",
			    json_integer(s->own_not_after));
			log_emit("info", "server_cert_reused", lg);
			json_decref(lg);
			X509_free(cert);
			return 0;
		}
		X509_free(cert);
		cert = NULL;
		if (strcmp(why, "none yet") != 0) {
			lg = json_object();
			json_object_set_new(lg, "why", esc_jstr(why));
			log_emit("info", "server_cert_not_reused", lg);
			json_decref(lg);
		}
	}
	if (key_generate(KEY_EC_P256, &key, err) != 0)
		return -1;
	pthread_mutex_lock(&s->mu);
	rv = ca_issue_server(s->ca, &s->o->names, s->o->server_ttl, key, &cert,
	    &res, err);
	if (rv == 0)
		rv = ca_chain_pem(s->ca, cert, &pem, &len, err);
	pthread_mutex_unlock(&s->mu);
	if (rv != 0)
		goto out;
	rv = -1;
	if (key_write(key_path, key, NULL, 1, err) != 0 ||
	    fs_write_atomic(pem_path, pem, len, 0644, 1, err) != 0)
		goto out;
	rv = own_install(s, pem_path, key_path, cert, err);
 out:
	if (pem)
		OPENSSL_cleanse(pem, len);
	free(pem);
	X509_free(cert);
	EVP_PKEY_free(key);
	return rv;
}

/* Renews the server certificate at two thirds of its life. */
static void *
renewer(void *arg)
{
	struct server *s = arg;
	struct mtls_error err;
	int64_t next_probe = 0;
	json_t *o;

	while (!stopping) {
		probe_store(s, &next_probe);
		int64_t now = (int64_t)time(NULL);
		int64_t due = s->own_not_before + (s->own_not_after -
		    s->own_not_before) * 2 / 3;

		if (now >= due) {
			error_clear(&err);
			o = json_object();
			if (own_identity(s, 0, &err) == 0) {
				json_object_set_new(o, "not_after",
				    json_integer(s->own_not_after));
				log_emit("info", "server_cert_renewed", o);
			} else {
				json_object_set_new(o, "error",
				    esc_jstr(err.msg));
				log_emit("error", "server_cert_renew_failed", o);
				if (storage_fault(&err))
					set_ready(s, &err);
			}
			json_decref(o);
		}
		poll(NULL, 0, 1000);
	}
	return NULL;
}

/* ---- a connection: requests read with deadlines ---- */

struct conn {
	struct server	*s;
	struct net_conn	*nc;
	int		 fd;
	struct mtls	*t;
	char		 client[80];
	char		 buf[16384];
	size_t		 have;		/* unparsed bytes in buf */
};

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

/* ---- responses ---- */

struct reply {
	int		 status;
	const char	*ctype;
	char		*body;		/* malloc'd */
	size_t		 len;
	int		 route;
	const char	*code;		/* the error code answered, logged */
	char		 error[600];	/* logged */
};

static void
reply_json(struct reply *rp, int status, json_t *o)
{
	rp->status = status;
	rp->ctype = "application/json";
	rp->body = json_dumps(o, JSON_COMPACT);
	rp->len = rp->body ? strlen(rp->body) : 0;
	json_decref(o);
}

static void
reply_error(struct reply *rp, int status, const char *code, const char *fmt,
    ...) MTLS_PRINTF(4, 5);

static void
reply_error(struct reply *rp, int status, const char *code, const char *fmt,
    ...)
{
	va_list ap;
	json_t *o = json_object();

	va_start(ap, fmt);
	vsnprintf(rp->error, sizeof(rp->error), fmt, ap);
	va_end(ap);
	rp->code = code;
	json_object_set_new(o, "error", esc_jstr(code));
	json_object_set_new(o, "message", esc_jstr(rp->error));
	reply_json(rp, status, o);
}

static void
reply_bytes(struct reply *rp, const char *ctype, const void *p, size_t n)
{
	rp->status = 200;
	rp->ctype = ctype;
	if ((rp->body = malloc(n ? n : 1)) != NULL) {
		memcpy(rp->body, p, n);
		rp->len = n;
	}
}

/* ---- handlers ---- */

static json_t *
body_json(const struct http_req *req, struct reply *rp)
{
	json_error_t je;
	json_t *o;
	const char *ct = http_req_header(req, "content-type");

	if (ct && strncmp(ct, "application/json", 16) != 0) {
		reply_error(rp, 415, "unsupported_media_type", "send "
		    "Content-Type: application/json");
		return NULL;
	}
	o = json_loadb((const char *)req->body, req->body_len,
	    JSON_REJECT_DUPLICATES, &je);
	if (o == NULL || !json_is_object(o)) {
		reply_error(rp, 400, "malformed_json", "request body is not a "
		    "JSON object: %s", o ? "not an object" : je.text);
		json_decref(o);
		return NULL;
	}
	return o;
}

static const char *
jstr(json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* The store could not write: 503 with the cause (nothing was issued or
 * burned: the transaction rolled back), and not ready until a write works. */
static void
unavailable(struct server *s, struct reply *rp, const struct mtls_error *err)
{
	set_ready(s, err);
	pthread_mutex_lock(&s->ready_mu);
	reply_error(rp, 503, "unavailable", "cannot issue: %s", s->not_ready);
	pthread_mutex_unlock(&s->ready_mu);
}

/* Issues for <pub> with <ids>, answers with the chain and the bundle. */
static void
issue_reply(struct server *s, struct conn *c, const struct ids *ids,
    EVP_PKEY *pub, const char *token_hash, const char *what, struct reply *rp)
{
	struct ca_issue_req r;
	struct ca_result res;
	struct mtls_error err;
	X509 *cert = NULL;
	char *chain = NULL, *bundle = NULL;
	size_t cl, bl;
	json_t *o, *lg;
	int rc;

	memset(&r, 0, sizeof(r));
	r.ids = *ids;
	r.key_type = -1;
	r.crl_url = s->crl_url;
	r.ocsp_url = s->ocsp_url;
	error_clear(&err);
	pthread_mutex_lock(&s->mu);
	r.role = ca_role_for(s->ca, ids);
	rc = r.role == NULL ? error_set(&err, MTLS_ERR_ARG, "%.200s is not "
	    "allowed by any role in ca.conf", ids->v[0]) :
	    ca_issue_pub(s->ca, &r, pub, token_hash, &cert, &res, &err);
	if (rc == 0 && (ca_chain_pem(s->ca, cert, &chain, &cl, &err) != 0 ||
	    ca_bundle_pem(s->ca, &bundle, &bl, &err) != 0))
		rc = -1;
	pthread_mutex_unlock(&s->mu);
	if (rc != 0) {
		if (cert != NULL)	/* recorded, but we cannot answer */
			reply_error(rp, 500, "internal", "%s", err.msg);
		else if (storage_fault(&err))
			unavailable(s, rp, &err);
		else if (token_hash && strstr(err.msg, "token"))
			reply_error(rp, 401, "bad_token", "%s", err.msg);
		else if (err.code == MTLS_ERR_ARG)
			reply_error(rp, 403, "refused", "%s", err.msg);
		else
			reply_error(rp, 500, "internal", "%s", err.msg);
		goto out;
	}
	set_ready(s, NULL);	/* it committed */
	__atomic_add_fetch(token_hash ? &s->m_issued : &s->m_renewed, 1,
	    __ATOMIC_RELAXED);
	o = json_object();
	json_object_set_new(o, "certificate", esc_jstr(chain));
	json_object_set_new(o, "bundle", esc_jstr(bundle));
	json_object_set_new(o, "serial", esc_jstr(res.serial));
	json_object_set_new(o, "identity", esc_jstr(ids->v[0]));
	json_object_set_new(o, "not_after", json_integer(res.not_after));
	reply_json(rp, 200, o);
	lg = json_object();
	json_object_set_new(lg, "client", esc_jstr(c->client));
	json_object_set_new(lg, "how", esc_jstr(what));
	json_object_set_new(lg, "serial", esc_jstr(res.serial));
	json_object_set_new(lg, "identity", esc_jstr(ids->v[0]));
	json_object_set_new(lg, "not_after", json_integer(res.not_after));
	log_emit("info", "issue", lg);
	json_decref(lg);
 out:
	free(chain);
	free(bundle);
	X509_free(cert);
}

/* The CSR (PEM text) must ask for nothing beyond <ids>: then issue. */
static void
csr_issue(struct server *s, struct conn *c, const struct ids *ids,
    const char *csr, const char *token_hash, const char *what,
    struct reply *rp)
{
	struct mtls_error err;
	EVP_PKEY *pub = NULL;

	error_clear(&err);
	if (ca_csr_parse((const uint8_t *)csr, strlen(csr), "csr", ids, &pub,
	    &err) != 0) {
		reply_error(rp, err.code == MTLS_ERR_ARG ? 403 : 400,
		    "bad_csr", "%s", err.msg);
		return;
	}
	issue_reply(s, c, ids, pub, token_hash, what, rp);
	EVP_PKEY_free(pub);
}

static void
h_enroll(struct server *s, struct conn *c, const struct http_req *req,
    struct reply *rp)
{
	json_t *o = body_json(req, rp);
	const char *token, *csr;
	char hash[65], id[SPIFFE_MAX + 1];
	struct mtls_error err;
	struct ids ids = { 0 };
	int rc;

	if (o == NULL)
		return;
	token = jstr(o, "token");
	csr = jstr(o, "csr");
	if (token == NULL || csr == NULL) {
		reply_error(rp, 400, "missing_field", "give \"token\" and "
		    "\"csr\" (PEM) as strings");
		goto out;
	}
	error_clear(&err);
	ca_token_hash(token, hash);
	pthread_mutex_lock(&s->mu);
	rc = store_token_get(s->ca->store, hash, id, sizeof(id), &err);
	pthread_mutex_unlock(&s->mu);
	if (rc != 0) {
		reply_error(rp, 401, "bad_token", "%s", err.msg);
		goto out;
	}
	if (ids_add(&ids, "", id, strlen(id)) != 0) {
		reply_error(rp, 500, "internal", "%s", err.msg);
		goto out;
	}
	csr_issue(s, c, &ids, csr, hash, "enroll", rp);
 out:
	ids_free(&ids);
	json_decref(o);
}

/*
 * The client's certificate, verified, issued by this CA and not revoked:
 * 0, or -1 with the reply set. Chaining to the root is not enough: a
 * sibling intermediate under the same root can sign any serial and any
 * name (issue 18), so the presented leaf must be byte for byte one this
 * CA signed and recorded (ca_issued). The admin rules of /v1/revoke are
 * matched on that same certificate: admins hold certificates of this CA.
 */
static int
authenticated(struct server *s, struct conn *c, struct reply *rp,
    struct cert_rec *rec)
{
	struct mtls_error err;
	char why[300];
	X509 *leaf;
	int rc;

	if (!mtls_peer_verified(c->t)) {
		int f = mtls_fail_code(c->t);

		if (f == MTLS_FAIL_NONE)
			reply_error(rp, 401, "client_cert_required", "this "
			    "call needs a client certificate issued by this CA");
		else
			reply_error(rp, 401, "client_cert_refused", "client "
			    "certificate refused: %s: %s", mtls_fail_name(f),
			    mtls_error(c->t));
		return -1;
	}
	if ((leaf = tls_peer_cert(c->t)) == NULL) {
		reply_error(rp, 401, "client_cert_required", "this call needs "
		    "a client certificate issued by this CA");
		return -1;
	}
	error_clear(&err);
	pthread_mutex_lock(&s->mu);
	rc = ca_issued(s->ca, leaf, rec, why, sizeof(why), &err);
	pthread_mutex_unlock(&s->mu);
	if (rc < 0) {
		reply_error(rp, 500, "internal", "%s", err.msg);
		return -1;
	}
	if (rc == 1) {
		reply_error(rp, 403, "unknown_certificate", "%s", why);
		return -1;
	}
	if (rec->revoked) {
		reply_error(rp, 403, "revoked", "certificate serial %s is "
		    "revoked", rec->serial);
		return -1;
	}
	return 0;
}

static void
h_renew(struct server *s, struct conn *c, const struct http_req *req,
    struct reply *rp)
{
	struct cert_rec rec;
	struct mtls_error err;
	struct ids ids = { 0 };
	json_t *o;
	const char *csr;

	if (authenticated(s, c, rp, &rec) != 0)
		return;
	if ((o = body_json(req, rp)) == NULL)
		return;
	if ((csr = jstr(o, "csr")) == NULL) {
		reply_error(rp, 400, "missing_field", "give \"csr\" (PEM) as a "
		    "string");
		goto out;
	}
	error_clear(&err);
	/* the same identities as the certificate presented, nothing more */
	if (ids_from_cert(tls_peer_cert(c->t), &ids,
	    &err) != 0 || ids.n == 0) {
		reply_error(rp, 403, "refused", "the client certificate has no "
		    "identity to renew");
		goto out;
	}
	/* a subject CN is not something we issue (ours is a copy of the first
	 * DNS name): renew the SAN identities only */
	{
		size_t i, k = 0;

		for (i = 0; i < ids.n; i++) {
			if (strncmp(ids.v[i], "cn:", 3) == 0)
				free(ids.v[i]);
			else
				ids.v[k++] = ids.v[i];
		}
		ids.n = k;
	}
	if (ids.n == 0) {
		reply_error(rp, 403, "refused", "the client certificate has no "
		    "SAN identity to renew");
		goto out;
	}
	csr_issue(s, c, &ids, csr, NULL, "renew", rp);
 out:
	ids_free(&ids);
	json_decref(o);
}

static void
h_revoke(struct server *s, struct conn *c, const struct http_req *req,
    struct reply *rp)
{
	struct cert_rec rec;
	struct ca_result res;
	struct mtls_error err;
	const char *serial, *reason, *id = mtls_peer_id(c->t);
	json_t *o, *lg;
	size_t i;
	int ok = 0, rc, already = 0, why = 0;

	if (authenticated(s, c, rp, &rec) != 0)
		return;
	for (i = 0; i < s->o->n_admin && !ok; i++)
		ok = id != NULL && mtls_rule_match(s->o->admin[i], id);
	if (!ok) {
		reply_error(rp, 403, "not_admin", "%s matches no --admin rule "
		    "of this CA server", id ? id : "this client");
		return;
	}
	if ((o = body_json(req, rp)) == NULL)
		return;
	serial = jstr(o, "serial");
	reason = jstr(o, "reason");
	if (serial == NULL) {
		reply_error(rp, 400, "missing_field", "give \"serial\" (hex)");
		goto out;
	}
	if (reason && (why = crl_reason_parse(reason)) < 0) {
		reply_error(rp, 400, "bad_reason", "unknown reason '%.64s'",
		    reason);
		goto out;
	}
	error_clear(&err);
	pthread_mutex_lock(&s->mu);
	rc = ca_revoke(s->ca, serial, why, &res, &already, &err);
	if (rc == 0 && !already)
		s->crl_made = 0;	/* the next GET /v1/crl signs anew */
	pthread_mutex_unlock(&s->mu);
	if (rc != 0) {
		if (storage_fault(&err))
			unavailable(s, rp, &err);
		else
			reply_error(rp, err.code == MTLS_ERR_ARG ? 404 : 500,
			    "unknown_serial", "%s", err.msg);
		goto out;
	}
	__atomic_add_fetch(&s->m_revoked, 1, __ATOMIC_RELAXED);
	json_decref(o);
	o = json_object();
	json_object_set_new(o, "serial", esc_jstr(res.serial));
	json_object_set_new(o, "revoked", json_true());
	json_object_set_new(o, "already", json_boolean(already));
	lg = json_deep_copy(o);
	json_object_set_new(lg, "by", esc_jstr(id));
	log_emit("info", "revoke", lg);
	json_decref(lg);
	reply_json(rp, 200, o);
	return;
 out:
	json_decref(o);
}

/* 1 when the Accept header names the JSON media type itself (a client
 * that sends only a wildcard, like curl and our agent, gets the default
 * form). Parameters (";q=...") are ignored; q=0 is not honoured. */
static int
wants_jwks(const char *accept)
{
	const char *p = accept;

	while (p != NULL && *p != '\0') {
		size_t n;

		p += strspn(p, " \t,");
		n = strcspn(p, " \t,;");
		if ((n == 16 && strncasecmp(p, "application/json", 16) == 0) ||
		    (n == 24 && strncasecmp(p, "application/jwk-set+json",
		    24) == 0))
			return 1;
		p = strchr(p, ',');
	}
	return 0;
}

/* GET /v1/bundle: {"bundle": PEM} (what the agent reads), or the SPIFFE
 * trust bundle (JWK Set) to a client that asks for application/json or
 * application/jwk-set+json. */
static void
h_bundle(struct server *s, const struct http_req *req, struct reply *rp)
{
	struct mtls_error err;
	char *pem = NULL;
	size_t len;
	json_t *o;
	int rc;

	if (wants_jwks(http_req_header(req, "accept"))) {
		pthread_mutex_lock(&s->mu);
		rc = ca_bundle_jwks(s->ca, &pem, &err);
		pthread_mutex_unlock(&s->mu);
		if (rc != 0) {
			reply_error(rp, 500, "internal", "%s", err.msg);
			return;
		}
		reply_bytes(rp, "application/json", pem, strlen(pem));
		free(pem);
		return;
	}
	pthread_mutex_lock(&s->mu);
	rc = ca_bundle_pem(s->ca, &pem, &len, &err);
	pthread_mutex_unlock(&s->mu);
	if (rc != 0) {
		reply_error(rp, 500, "internal", "%s", err.msg);
		return;
	}
	o = json_object();
	json_object_set_new(o, "bundle", esc_jstr(pem));
	free(pem);
	reply_json(rp, 200, o);
}

static void
h_crl(struct server *s, struct reply *rp)
{
	struct mtls_error err;
	X509_CRL *crl = NULL;
	unsigned char *der = NULL;
	int64_t now = (int64_t)time(NULL);
	int n;

	pthread_mutex_lock(&s->mu);
	/* re-signed after a revocation, and at half its validity */
	if (s->crl == NULL || s->crl_made == 0 ||
	    now - s->crl_made >= s->o->crl_ttl / 2) {
		error_clear(&err);
		if (ca_crl(s->ca, s->o->crl_ttl, &crl, &err) == 0 &&
		    (n = i2d_X509_CRL(crl, &der)) > 0) {
			OPENSSL_free(s->crl);
			s->crl = der;
			s->crl_len = (size_t)n;
			s->crl_made = now;
		}
		X509_CRL_free(crl);
		if (storage_fault(&err))	/* the CRL number is stored */
			set_ready(s, &err);
	}
	if (s->crl != NULL)
		reply_bytes(rp, "application/pkix-crl", s->crl, s->crl_len);
	else
		reply_error(rp, storage_fault(&err) ? 503 : 500, storage_fault(
		    &err) ? "unavailable" : "internal", "cannot make the CRL: "
		    "%s", err.msg);
	pthread_mutex_unlock(&s->mu);
}

/* base64 (standard or URL alphabet, '%'-escaped or not) to bytes: the
 * GET form of OCSP (RFC 6960 A.1) */
static int
b64_decode(const char *in, uint8_t **out, size_t *out_len)
{
	size_t n = strlen(in), i, j = 0, pad = 0;
	char *t = malloc(n + 4);
	int len;

	*out = NULL;
	if (t == NULL || n > 8192)
		goto fail;
	for (i = 0; i < n; i++) {
		char ch = in[i];

		if (ch == '%') {
			char hx[3];

			if (i + 2 >= n)
				goto fail;
			hx[0] = in[i + 1];
			hx[1] = in[i + 2];
			hx[2] = '\0';
			ch = (char)strtol(hx, NULL, 16);
			i += 2;
		}
		t[j++] = ch == '-' ? '+' : ch == '_' ? '/' : ch;
	}
	while (j % 4)
		t[j++] = '=';
	t[j] = '\0';
	for (i = j; i > 0 && t[i - 1] == '='; i--)
		pad++;
	if (j == 0 || pad > 2 || (*out = malloc(j / 4 * 3 + 1)) == NULL)
		goto fail;
	if ((len = EVP_DecodeBlock(*out, (unsigned char *)t, (int)j)) < 0)
		goto fail;
	free(t);
	*out_len = (size_t)len - pad;
	return 0;
 fail:
	free(t);
	free(*out);
	*out = NULL;
	return -1;
}

static void
h_ocsp(struct server *s, const struct http_req *req, const char *path,
    struct reply *rp)
{
	struct mtls_error err;
	uint8_t *der = NULL, *resp = NULL;
	size_t len = 0, rlen;
	int rc;

	if (strcmp(req->method, "POST") == 0) {
		der = req->body;
		len = req->body_len;
	} else if (strncmp(path, "/v1/ocsp/", 9) != 0 ||
	    b64_decode(path + 9, &der, &len) != 0) {
		reply_error(rp, 400, "bad_ocsp_request", "GET /v1/ocsp/"
		    "<base64 DER request>");
		return;
	}
	error_clear(&err);
	pthread_mutex_lock(&s->mu);
	rc = ca_ocsp(s->ca, der, len, s->o->ocsp_ttl, &resp, &rlen, &err);
	pthread_mutex_unlock(&s->mu);
	if (der != req->body)
		free(der);
	if (rc != 0) {
		reply_error(rp, 500, "internal", "%s", err.msg);
		return;
	}
	__atomic_add_fetch(&s->m_ocsp, 1, __ATOMIC_RELAXED);
	reply_bytes(rp, "application/ocsp-response", resp, rlen);
	OPENSSL_free(resp);
}

static void
h_metrics(struct server *s, struct reply *rp)
{
	char *b = NULL;
	size_t bl = 0;
	FILE *f = open_memstream(&b, &bl);
	struct net_stats ns;
	int r, k;

	if (f == NULL) {
		reply_error(rp, 500, "internal", "out of memory");
		return;
	}
	net_loop_stats(s->loop, &ns);
	fprintf(f, "# HELP mtls_ca_requests_total CA API requests by route "
	    "and status class.\n# TYPE mtls_ca_requests_total counter\n");
	for (r = 0; r < R__COUNT; r++)
		for (k = 1; k < 6; k++) {
			uint64_t v = __atomic_load_n(&s->m_req[r][k],
			    __ATOMIC_RELAXED);

			if (v)
				fprintf(f, "mtls_ca_requests_total{route=\"%s\","
				    "code=\"%dxx\"} %llu\n", route_names[r], k,
				    (unsigned long long)v);
		}
	fprintf(f, "# TYPE mtls_ca_issued_total counter\n"
	    "mtls_ca_issued_total{how=\"enroll\"} %llu\n"
	    "mtls_ca_issued_total{how=\"renew\"} %llu\n"
	    "# TYPE mtls_ca_revocations_total counter\n"
	    "mtls_ca_revocations_total %llu\n"
	    "# TYPE mtls_ca_ocsp_responses_total counter\n"
	    "mtls_ca_ocsp_responses_total %llu\n"
	    "# TYPE mtls_connections_active gauge\nmtls_connections_active %d\n"
	    "# TYPE mtls_cert_expiry_timestamp_seconds gauge\n"
	    "mtls_cert_expiry_timestamp_seconds{id=\"ca-server\"} %lld\n",
	    (unsigned long long)ld(&s->m_issued),
	    (unsigned long long)ld(&s->m_renewed),
	    (unsigned long long)ld(&s->m_revoked),
	    (unsigned long long)ld(&s->m_ocsp), ns.open,
	    (long long)s->own_not_after);
	fprintf(f, "# HELP mtls_ca_conns_closed_total Connections the server "
	    "closed or refused to stay within its limits.\n"
	    "# TYPE mtls_ca_conns_closed_total counter\n"
	    "mtls_ca_conns_closed_total{reason=\"first_byte_timeout\"} %llu\n"
	    "mtls_ca_conns_closed_total{reason=\"request_timeout\"} %llu\n"
	    "mtls_ca_conns_closed_total{reason=\"per_ip_limit\"} %llu\n"
	    "mtls_ca_conns_closed_total{reason=\"max_conns\"} %llu\n"
	    "mtls_ca_conns_closed_total{reason=\"evicted_idle\"} %llu\n",
	    (unsigned long long)ns.first_byte_timeouts,
	    (unsigned long long)ld(&s->m_hs_timeouts),
	    (unsigned long long)ns.per_ip_refused,
	    (unsigned long long)ns.full_refused,
	    (unsigned long long)ns.evicted);
	fclose(f);
	rp->status = 200;
	rp->ctype = "text/plain; version=0.0.4";
	rp->body = b;
	rp->len = bl;
}

/* /readyz: 200 while we can issue; 503 with the cause while the store
 * cannot write. /healthz (liveness) stays 200 either way. */
static void
h_ready(struct server *s, struct reply *rp)
{
	pthread_mutex_lock(&s->ready_mu);
	if (s->not_ready[0] != '\0')
		reply_error(rp, 503, "not_ready", "cannot issue: %s",
		    s->not_ready);
	else
		reply_bytes(rp, "text/plain", "ready\n", 6);
	pthread_mutex_unlock(&s->ready_mu);
}

static void
route(struct server *s, struct conn *c, const struct http_req *req,
    struct reply *rp)
{
	char path[2048];
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
	else if (strcmp(path, "/v1/crl") == 0)
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
	else {
		rp->route = R_OTHER;
		reply_error(rp, 404, "not_found", "no route %.200s", path);
		return;
	}
	switch (rp->route) {
	case R_ENROLL:
	case R_RENEW:
	case R_REVOKE:
		if (!post)
			goto method;
		if (rp->route == R_ENROLL)
			h_enroll(s, c, req, rp);
		else if (rp->route == R_RENEW)
			h_renew(s, c, req, rp);
		else
			h_revoke(s, c, req, rp);
		return;
	case R_OCSP:
		if (!post && !get)
			goto method;
		h_ocsp(s, req, path, rp);
		return;
	default:
		if (!get)
			goto method;
		if (rp->route == R_BUNDLE)
			h_bundle(s, req, rp);
		else if (rp->route == R_CRL)
			h_crl(s, rp);
		else if (rp->route == R_METRICS)
			h_metrics(s, rp);
		else if (rp->route == R_READY)
			h_ready(s, rp);
		else
			reply_bytes(rp, "text/plain", "ok\n", 3);
		return;
	}
 method:
	reply_error(rp, 405, "method_not_allowed", "%s is not allowed on %s",
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
	proxy_addr_text(net_conn_addr(nc), c->client, sizeof(c->client));
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
		net_idle(nc, 0);	/* in a request: not closed for room */
		if (r < 0) {
			if (req.status == 408)
				__atomic_add_fetch(&s->m_hs_timeouts, 1,
				    __ATOMIC_RELAXED);
			reply_error(&rp, req.status ? req.status : 400,
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
		if (rp.body != NULL && http_response(&out, &out_len, rp.status,
		    rp.ctype, rp.body, rp.len, keep) == 0) {
			if (net_write(nc, c->t, out, out_len, net_now_ms() +
			    s->o->request_ms) != 0)
				keep = 0;
			free(out);
		} else
			keep = 0;
		free(rp.body);
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
	if (ca_open(&s.ca, o->dir, o->pass_file, err) != 0)
		goto out;
	snprintf(s.url, sizeof(s.url), "%s", o->url);
	snprintf(s.crl_url, sizeof(s.crl_url), "%s/v1/crl", s.url);
	snprintf(s.ocsp_url, sizeof(s.ocsp_url), "%s/v1/ocsp", s.url);
	if (proxy_addr_parse(o->listen, "--listen", &ss, &sl, err) != 0)
		goto out;
	if ((s.tls = mtls_server()) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "out of memory");
		goto out;
	}
	if (own_identity(&s, 1, err) != 0)
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
	if (!stopping)
		net_loop_run(s.loop);
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
	OPENSSL_free(s.crl);
	ca_close(s.ca);
	return rv;
}
