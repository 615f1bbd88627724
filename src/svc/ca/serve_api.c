/*
 * ca serve's JSON API: enroll (a join token and a CSR), renew (a client
 * certificate this CA issued and a CSR), revoke (an --admin client), the
 * bundle, /metrics and /readyz. A failure is answered by its kind (enum
 * fault below), never by the text of its message.
 */
#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <jansson.h>
#include <openssl/ssl.h>

#include "ca/serve.h"

static const char *route_names[R__COUNT] = { "enroll", "renew", "revoke",
    "bundle", "crl", "ocsp", "healthz", "readyz", "metrics", "ui",
    "rotation", "other" };

static uint64_t
ld(const uint64_t *v)
{
	return __atomic_load_n(v, __ATOMIC_RELAXED);
}

void
serve_reply_json(struct reply *rp, int status, json_t *o)
{
	rp->status = status;
	rp->ctype = "application/json";
	rp->body = json_dumps(o, JSON_COMPACT);
	rp->len = rp->body ? strlen(rp->body) : 0;
	json_decref(o);
}

void
serve_reply_error(struct reply *rp, int status, const char *code,
    const char *fmt,
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
	serve_reply_json(rp, status, o);
}

void
serve_reply_bytes(struct reply *rp, const char *ctype, const void *p, size_t n)
{
	rp->status = 200;
	rp->ctype = ctype;
	if ((rp->body = malloc(n ? n : 1)) != NULL) {
		memcpy(rp->body, p, n);
		rp->len = n;
	}
}

static json_t *
body_json(const struct http_req *req, struct reply *rp)
{
	json_error_t je;
	json_t *o;
	const char *ct = http_req_header(req, "content-type");

	if (ct && strncmp(ct, "application/json", 16) != 0) {
		serve_reply_error(rp, 415, "unsupported_media_type", "send "
		    "Content-Type: application/json");
		return NULL;
	}
	o = json_loadb((const char *)req->body, req->body_len,
	    JSON_REJECT_DUPLICATES, &je);
	if (o == NULL || !json_is_object(o)) {
		serve_reply_error(rp, 400, "malformed_json",
		    "request body is not a "
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

/* The store could not write, or cannot be reached: 503 with the cause
 * (nothing was issued or burned: the transaction rolled back), and not
 * ready until a write works. A full or read-only disk is "unavailable";
 * a store that cannot be used (PostgreSQL down, busy or timed out, an I/O
 * error) is "store_unavailable". Both are worth a retry later. */
void
serve_reply_unavailable(struct server *s, struct reply *rp, const char *what,
    const struct mtls_error *err)
{
	serve_set_ready(s, err);
	pthread_mutex_lock(&s->ready_mu);
	serve_reply_error(rp, 503, err->sys == EIO ? "store_unavailable" :
	    "unavailable", "%s: %s (details in the server's log)", what,
	    s->not_ready);
	pthread_mutex_unlock(&s->ready_mu);
}

static void
unavailable(struct server *s, struct reply *rp, const struct mtls_error *err)
{
	serve_reply_unavailable(s, rp, "cannot issue", err);
}

/* How a failed issuance is answered, by its kind (enum ca_fault): the
 * status and the "error" code of the JSON body. */
static const struct {
	int		 status;
	const char	*code;
} fault_replies[] = {
	[CA_FAULT_NONE] =	{ 500, "internal" },
	[CA_FAULT_INTERNAL] =	{ 500, "internal" },
	[CA_FAULT_REFUSED] =	{ 403, "refused" },
	[CA_FAULT_TOKEN] =	{ 401, "bad_token" },
	[CA_FAULT_STORAGE] =	{ 503, "unavailable" },
};

static void
reply_fault(struct server *s, struct reply *rp, enum ca_fault f,
    const struct mtls_error *err)
{
	if (f == CA_FAULT_STORAGE)	/* also: not ready until it writes */
		unavailable(s, rp, err);
	else
		serve_reply_error(rp, fault_replies[f].status,
		    fault_replies[f].code,
		    "%s", err->msg);
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
	uint64_t t;
	int rc;

	memset(&r, 0, sizeof(r));
	memset(&res, 0, sizeof(res));
	r.ids = *ids;
	r.key_type = -1;
	r.crl_url = s->crl_url;
	r.ocsp_url = s->ocsp_url;
	r.bundle_gen = rp->bundle_gen;	/* recorded with the row */
	r.bundle_replaces = rp->bundle_replaces[0] ? rp->bundle_replaces :
	    NULL;
	error_clear(&err);
	/* No lock: the CA was prepared before serving (ca_issue_prepare) and
	 * issuance only reads it; the store serializes its own writes (a
	 * serial is unique and a token burns once in its transaction). */
	r.role = ca_role_for(rp->ca, ids);
	rc = r.role == NULL ? error_set(&err, MTLS_ERR_ARG, "%.200s is not "
	    "allowed by any role in ca.conf", ids->v[0]) :
	    ca_issue_pub(rp->ca, &r, pub, token_hash, &cert, &res, &err);
	t = ca_phase_start();
	if (rc == 0 && (ca_chain_pem(rp->ca, cert, &chain, &cl, &err) != 0 ||
	    ca_bundle_pem(rp->ca, &bundle, &bl, &err) != 0))
		rc = -1;
	if (rc != 0) {
		/* recorded, but we cannot answer: ours */
		reply_fault(s, rp, cert != NULL ? CA_FAULT_INTERNAL :
		    res.fault != CA_FAULT_NONE ? res.fault : ca_fault_of(&err),
		    &err);
		goto out;
	}
	serve_set_ready(s, NULL);	/* it committed */
	__atomic_add_fetch(token_hash ? &s->m_issued : &s->m_renewed, 1,
	    __ATOMIC_RELAXED);
	o = json_object();
	json_object_set_new(o, "certificate", esc_jstr(chain));
	json_object_set_new(o, "bundle", esc_jstr(bundle));
	json_object_set_new(o, "serial", esc_jstr(res.serial));
	json_object_set_new(o, "identity", esc_jstr(ids->v[0]));
	json_object_set_new(o, "not_after", json_integer(res.not_after));
	serve_reply_json(rp, 200, o);
	lg = json_object();
	json_object_set_new(lg, "client", esc_jstr(c->client));
	json_object_set_new(lg, "how", esc_jstr(what));
	json_object_set_new(lg, "serial", esc_jstr(res.serial));
	json_object_set_new(lg, "identity", esc_jstr(ids->v[0]));
	json_object_set_new(lg, "not_after", json_integer(res.not_after));
	log_emit("info", "issue", lg);
	json_decref(lg);
	ca_phase_end(CA_PH_REPLY, t);
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
	uint64_t t = ca_phase_start();
	int rc;

	error_clear(&err);
	rc = ca_csr_parse((const uint8_t *)csr, strlen(csr), "csr", ids, &pub,
	    &err);
	ca_phase_end(CA_PH_PARSE, t);
	if (rc != 0) {
		serve_reply_error(rp, err.code == MTLS_ERR_ARG ? 403 : 400,
		    "bad_csr", "%s", err.msg);
		return;
	}
	issue_reply(s, c, ids, pub, token_hash, what, rp);
	EVP_PKEY_free(pub);
}

void
serve_enroll(struct server *s, struct conn *c, const struct http_req *req,
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
		serve_reply_error(rp, 400, "missing_field",
		    "give \"token\" and "
		    "\"csr\" (PEM) as strings");
		goto out;
	}
	error_clear(&err);
	ca_token_hash(token, hash);
	rc = store_token_get(rp->ca->store, hash, id, sizeof(id), &err);
	if (rc != 0) {
		/* a store that cannot answer is not a bad token: 503, and
		 * the client keeps its token for when the store is back */
		if (serve_storage_fault(&err))
			unavailable(s, rp, &err);
		else if (err.code == MTLS_ERR_ARG)
			serve_reply_error(rp, 401, "bad_token", "%s", err.msg);
		else	/* the store answered nonsense: ours, not the token */
			serve_reply_error(rp, 500, "internal", "%s", err.msg);
		goto out;
	}
	if (ids_add(&ids, "", id, strlen(id)) != 0) {
		serve_reply_error(rp, 500, "internal", "%s", err.msg);
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
	uint64_t t;
	int rc;

	if (!mtls_peer_verified(c->t)) {
		int f = mtls_fail_code(c->t);

		if (f == MTLS_FAIL_NONE)
			serve_reply_error(rp, 401, "client_cert_required",
			    "this "
			    "call needs a client certificate issued by this CA");
		else
			serve_reply_error(rp, 401, "client_cert_refused",
			    "client "
			    "certificate refused: %s: %s", mtls_fail_name(f),
			    mtls_error(c->t));
		return -1;
	}
	if ((leaf = tls_peer_cert(c->t)) == NULL) {
		serve_reply_error(rp, 401, "client_cert_required",
		    "this call needs "
		    "a client certificate issued by this CA");
		return -1;
	}
	error_clear(&err);
	t = ca_phase_start();	/* reads the CA and the store: no lock */
	rc = ca_issued_memo(rp->ca, leaf, &c->issued, rec, why, sizeof(why),
	    &err);
	ca_phase_end(CA_PH_AUTH, t);
	if (rc < 0) {	/* the store cannot say: not the client's fault */
		if (serve_storage_fault(&err))
			serve_reply_unavailable(s, rp, "cannot check the "
			    "client certificate", &err);
		else
			serve_reply_error(rp, 500, "internal", "%s", err.msg);
		return -1;
	}
	if (rc == 1) {
		serve_reply_error(rp, 403, "unknown_certificate", "%s", why);
		return -1;
	}
	if (rec->revoked) {
		serve_reply_error(rp, 403, "revoked",
		    "certificate serial %s is "
		    "revoked", rec->serial);
		return -1;
	}
	return 0;
}

void
serve_renew(struct server *s, struct conn *c, const struct http_req *req,
    struct reply *rp)
{
	struct cert_rec rec;
	struct mtls_error err;
	struct ids ids = { 0 };
	json_t *o;
	const char *csr;

	if (authenticated(s, c, rp, &rec) != 0)
		return;
	/* its bundle report replaces this certificate's, no other's */
	snprintf(rp->bundle_replaces, sizeof(rp->bundle_replaces), "%s",
	    rec.serial);
	if ((o = body_json(req, rp)) == NULL)
		return;
	if ((csr = jstr(o, "csr")) == NULL) {
		serve_reply_error(rp, 400, "missing_field",
		    "give \"csr\" (PEM) as a "
		    "string");
		goto out;
	}
	error_clear(&err);
	/* the same identities as the certificate presented, nothing more */
	if (ids_from_cert(tls_peer_cert(c->t), &ids,
	    &err) != 0 || ids.n == 0) {
		serve_reply_error(rp, 403, "refused",
		    "the client certificate has no "
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
		serve_reply_error(rp, 403, "refused",
		    "the client certificate has no "
		    "SAN identity to renew");
		goto out;
	}
	csr_issue(s, c, &ids, csr, NULL, "renew", rp);
 out:
	ids_free(&ids);
	json_decref(o);
}

int
serve_admin(struct server *s, struct conn *c, struct reply *rp)
{
	struct cert_rec rec;
	const char *id;

	if (authenticated(s, c, rp, &rec) != 0)
		return -1;
	id = mtls_peer_id(c->t);
	if (rules_match(s->o->admin, s->o->n_admin, &id, 1, 0) < 0) {
		serve_reply_error(rp, 403, "not_admin",
		    "%s matches no --admin rule "
		    "of this CA server", id ? id : "this client");
		return -1;
	}
	return 0;
}

void
serve_revoke(struct server *s, struct conn *c, const struct http_req *req,
    struct reply *rp)
{
	struct ca_result res;
	struct mtls_error err;
	const char *serial, *reason, *id = mtls_peer_id(c->t);
	json_t *o, *lg;
	int rc, already = 0, why = 0;

	if (serve_admin(s, c, rp) != 0)
		return;
	if ((o = body_json(req, rp)) == NULL)
		return;
	serial = jstr(o, "serial");
	reason = jstr(o, "reason");
	if (serial == NULL) {
		serve_reply_error(rp, 400, "missing_field",
		    "give \"serial\" (hex)");
		goto out;
	}
	if (reason && (why = crl_reason_parse(reason)) < 0) {
		serve_reply_error(rp, 400, "bad_reason",
		    "unknown reason '%.64s'",
		    reason);
		goto out;
	}
	error_clear(&err);
	pthread_mutex_lock(&s->mu);
	rc = ca_revoke(rp->ca, serial, why, &res, &already, &err);
	if (rc == 0 && !already)
		serve_crl_stale(s);	/* the next GET signs anew */
	pthread_mutex_unlock(&s->mu);
	if (rc != 0) {
		if (serve_storage_fault(&err))
			unavailable(s, rp, &err);
		else if (err.code == MTLS_ERR_ARG)
			serve_reply_error(rp, 404, "unknown_serial", "%s",
			    err.msg);
		else
			serve_reply_error(rp, 500, "internal", "%s", err.msg);
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
	serve_reply_json(rp, 200, o);
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

/* The bundle form a query asks for: 1 SPIFFE, 0 PEM, -1 none given,
 * -2 something else ("format=spiffe" or "format=pem", alone). */
static int
bundle_query(const struct http_req *req)
{
	const char *q = strchr(req->url, '?');

	if (q == NULL || q[1] == '\0')
		return -1;
	if (strcmp(q + 1, "format=spiffe") == 0)
		return 1;
	if (strcmp(q + 1, "format=pem") == 0)
		return 0;
	return -2;
}

/* GET /v1/bundle: {"bundle": PEM} (what the agent reads), or the SPIFFE
 * trust bundle (JWK Set) to a client that asks for application/json or
 * application/jwk-set+json, or for ?format=spiffe: a partner's SPIFFE
 * bundle endpoint client (https_web) may send no Accept at all. */
void
serve_bundle(struct server *s, const struct http_req *req, struct reply *rp)
{
	struct mtls_error err;
	char *pem = NULL;
	size_t len;
	json_t *o;
	int rc, form = bundle_query(req);

	if (form == -2) {
		serve_reply_error(rp, 400, "bad_query", "GET /v1/bundle takes "
		    "?format=spiffe (the SPIFFE trust bundle) or ?format=pem, "
		    "or no query");
		return;
	}
	if (form == 1 || (form == -1 &&
	    wants_jwks(http_req_header(req, "accept")))) {
		pthread_mutex_lock(&s->mu);
		rc = ca_bundle_jwks(rp->ca, &pem, &err);
		pthread_mutex_unlock(&s->mu);
		if (rc != 0) {
			serve_reply_error(rp, 500, "internal", "%s", err.msg);
			return;
		}
		serve_reply_bytes(rp, "application/json", pem, strlen(pem));
		free(pem);
		return;
	}
	pthread_mutex_lock(&s->mu);
	rc = ca_bundle_pem(rp->ca, &pem, &len, &err);
	pthread_mutex_unlock(&s->mu);
	if (rc != 0) {
		serve_reply_error(rp, 500, "internal", "%s", err.msg);
		return;
	}
	o = json_object();
	json_object_set_new(o, "bundle", esc_jstr(pem));
	free(pem);
	serve_reply_json(rp, 200, o);
}

void
serve_metrics(struct server *s, struct reply *rp)
{
	char *b = NULL;
	size_t bl = 0;
	FILE *f = open_memstream(&b, &bl);
	struct net_stats ns;
	uint64_t commits, items;
	int r, k;

	if (f == NULL) {
		serve_reply_error(rp, 500, "internal", "out of memory");
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
	store_stats(rp->ca->store, &commits, &items);
	fprintf(f, "# HELP mtls_ca_store_commits_total Transactions that "
	    "recorded issued certificates (group commit: several each).\n"
	    "# TYPE mtls_ca_store_commits_total counter\n"
	    "mtls_ca_store_commits_total %llu\n"
	    "# TYPE mtls_ca_store_committed_certs_total counter\n"
	    "mtls_ca_store_committed_certs_total %llu\n",
	    (unsigned long long)commits, (unsigned long long)items);
	serve_rotation_metrics(s, f);
	fprintf(f, "# HELP mtls_ca_phase_seconds_total Wall-clock time in each "
	    "phase of an issuance (lock: waiting for the CA; none since "
	    "issuance takes no lock).\n"
	    "# TYPE mtls_ca_phase_seconds_total counter\n"
	    "# HELP mtls_ca_phase_cpu_seconds_total CPU time of the thread in "
	    "each phase.\n# TYPE mtls_ca_phase_cpu_seconds_total counter\n");
	for (r = 0; r < CA_PH__COUNT; r++) {
		uint64_t n, pns, cns;

		ca_phase_get((enum ca_phase)r, &n, &pns, &cns);
		fprintf(f, "mtls_ca_phase_seconds_total{phase=\"%s\"} %.6f\n"
		    "mtls_ca_phase_cpu_seconds_total{phase=\"%s\"} %.6f\n"
		    "mtls_ca_phase_calls_total{phase=\"%s\"} %llu\n",
		    ca_phase_names[r], (double)pns / 1e9, ca_phase_names[r],
		    (double)cns / 1e9, ca_phase_names[r],
		    (unsigned long long)n);
	}
	fclose(f);
	rp->status = 200;
	rp->ctype = "text/plain; version=0.0.4";
	rp->body = b;
	rp->len = bl;
}

/* /readyz: 200 while we can issue; 503 with the cause while the store
 * cannot write. /healthz (liveness) stays 200 either way. */
void
serve_ready(struct server *s, struct reply *rp)
{
	pthread_mutex_lock(&s->ready_mu);
	if (s->not_ready[0] != '\0')
		serve_reply_error(rp, 503, "not_ready", "cannot issue: %s",
		    s->not_ready);
	else
		serve_reply_bytes(rp, "text/plain", "ready\n", 6);
	pthread_mutex_unlock(&s->ready_mu);
}
