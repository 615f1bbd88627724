/*
 * mtls doctor connect: one real handshake against any TLS server, traced
 * message by message (SSL_set_msg_callback), then explained.
 *
 * The handshake runs with OpenSSL's verification off on purpose: a server
 * whose certificate we would refuse can still tell us whether it asks for
 * ours and whether it accepts it. Its chain is then verified with libmtls's
 * own policy (analyze.c), so the verdict is the one the proxy would reach.
 * When the server refuses our ClientHello outright, a few more handshakes
 * with one dimension widened (versions, groups, signature algorithms,
 * ciphers) name what the two sides do not share (probe.c). The files of
 * this command are listed in connect.h.
 */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include "doctor/doctor.h"
#include "doctor/connect.h"

#define SYSTEM_BUNDLE	"/etc/ssl/certs/ca-certificates.crt"

int
doctor_split_hostport(const char *t, char *host, size_t hl, char *port,
    size_t pl)
{
	const char *c;

	if (t[0] == '[') {
		if ((c = strchr(t, ']')) == NULL || c[1] != ':')
			return -1;
		snprintf(host, hl, "%.*s", (int)(c - t - 1), t + 1);
		c++;
	} else {
		if ((c = strrchr(t, ':')) == NULL)
			return -1;
		snprintf(host, hl, "%.*s", (int)(c - t), t);
	}
	snprintf(port, pl, "%s", c + 1);
	return host[0] && port[0] && strspn(port, "0123456789") ==
	    strlen(port) ? 0 : -1;
}

static int
is_ip(const char *h)
{
	unsigned char b[16];

	return inet_pton(AF_INET, h, b) == 1 || inet_pton(AF_INET6, h, b) == 1;
}

static int
parse_version(const char *s)
{
	if (s == NULL)
		return 0;
	if (strcmp(s, "1.2") == 0)
		return TLS1_2_VERSION;
	if (strcmp(s, "1.3") == 0)
		return TLS1_3_VERSION;
	return -1;
}

static int
load_ours(const struct doctor_connect_opts *o, STACK_OF(X509) **chain,
    EVP_PKEY **key, json_t *report)
{
	struct mtls_error err;

	error_clear(&err);
	if (o->cert == NULL && o->key == NULL)
		return 0;
	if (o->cert == NULL || o->key == NULL) {
		json_object_set_new(report, "error", json_string("give both "
		    "--cert and --key"));
		return -1;
	}
	if (certs_load(o->cert, chain, &err) != 0 ||
	    key_load(o->key, NULL, key, &err) != 0) {
		json_object_set_new(report, "error", esc_jstr(err.msg));
		return -1;
	}
	return 0;
}

json_t *
doctor_connect(const struct doctor_connect_opts *o, int *usage)
{
	json_t *report = json_object(), *findings = json_array();
	json_t *trace = json_array(), *sc;
	STACK_OF(X509) *mine = NULL, *peer;
	EVP_PKEY *key = NULL;
	SSL_CTX *ctx = NULL;
	struct variant v;
	struct attempt a;
	struct doctor_chain_opts co;
	char host[256], port[16], expect[300], ca_used[4096];
	const char *sni, *ca;
	int completed;
	size_t nf;

	*usage = 0;
	memset(&a, 0, sizeof(a));
	a.fd = -1;
	if (report == NULL || findings == NULL || trace == NULL) {
		json_decref(report);
		json_decref(findings);
		json_decref(trace);
		return NULL;
	}
	json_object_set_new(report, "target", esc_jstr(o->target));
	if (o->ca && access(o->ca, R_OK) != 0) {
		snprintf(ca_used, sizeof(ca_used), "--ca %s: cannot read it",
		    o->ca);
		json_object_set_new(report, "error", esc_jstr(ca_used));
		*usage = 1;
		goto out;
	}
	if (doctor_split_hostport(o->target, host, sizeof(host), port,
	    sizeof(port)) != 0) {
		json_object_set_new(report, "error", json_string("the target "
		    "must be HOST:PORT (or [IPv6]:PORT)"));
		*usage = 1;
		goto out;
	}
	memset(&v, 0, sizeof(v));
	v.seclevel = -1;
	v.min_v = parse_version(o->min_tls);
	v.max_v = parse_version(o->max_tls);
	v.groups = o->groups;
	v.sigalgs = o->sigalgs;
	if (v.min_v < 0 || v.max_v < 0) {
		json_object_set_new(report, "error", json_string("--min-tls and "
		    "--max-tls take 1.2 or 1.3"));
		*usage = 1;
		goto out;
	}
	if (load_ours(o, &mine, &key, report) != 0) {
		*usage = 1;
		goto out;
	}
	if ((ctx = attempt_ctx_new(&v, mine, key)) == NULL) {
		json_object_set_new(report, "error", json_string("cannot use "
		    "these settings (--groups, --sigalgs, or the key does not "
		    "match the certificate)"));
		ERR_clear_error();
		*usage = 1;
		goto out;
	}
	sni = o->servername ? o->servername : is_ip(host) ? NULL : host;
	if (o->expect)
		snprintf(expect, sizeof(expect), "%s", o->expect);
	else if (sni)
		snprintf(expect, sizeof(expect), "dns:%s", sni);
	else if (ip_canon(host, ca_used, sizeof(ca_used)) == 0)
		snprintf(expect, sizeof(expect), "ip:%s", ca_used);
	else
		expect[0] = '\0';
	ca = o->ca ? o->ca : access(SYSTEM_BUNDLE, R_OK) == 0 ? SYSTEM_BUNDLE :
	    NULL;
	json_object_set_new(report, "servername", sni ? esc_jstr(sni) :
	    json_null());
	json_object_set_new(report, "expect", expect[0] ? esc_jstr(expect) :
	    json_null());
	json_object_set_new(report, "ca", ca ? esc_jstr(ca) : json_null());

	a.trace = trace;
	a.live = o->live;
	a.http = !o->no_http;
	a.deadline_us = net_now_us() + (int64_t)o->timeout_ms * 1000;
	completed = attempt_run(&a, ctx, host, port, sni);
	json_object_set(report, "trace", trace);
	if (!completed)
		explain_failure(&a, &v, mine != NULL, host, port, sni,
		    o->timeout_ms, mine, key, findings);
	if (a.ssl && a.saw_server_hello && completed)
		facts_tls(a.ssl, report);
	if (a.ssl && (peer = SSL_get_peer_cert_chain(a.ssl)) != NULL &&
	    sk_X509_num(peer) > 0) {
		memset(&co, 0, sizeof(co));
		co.ca = ca;
		co.purpose = MTLS_PURPOSE_SERVER;
		co.expect = expect[0] ? expect : NULL;
		co.now = time(NULL);
		co.who = "the server's";
		if ((sc = doctor_chain(peer, &co, findings)) != NULL)
			json_object_set_new(report, "server_chain", sc);
	}
	if (a.ssl && a.saw_server_hello)
		facts_client_cert(&a, mine, completed, report, findings);
	if (completed && a.saw_cr && (a.alert_in_after_cert >= 0 || a.eof))
		explain_refusal(&a, findings);
	if (completed && a.http_status)
		explain_http(&a, report, findings);
	if (mine) {
		/* our own chain: the likely cause when the server refuses it */
		nf = json_array_size(findings);
		memset(&co, 0, sizeof(co));
		co.purpose = MTLS_PURPOSE_CLIENT;
		co.now = time(NULL);
		co.who = "our";
		co.key = key;
		if ((sc = doctor_chain(mine, &co, findings)) != NULL)
			json_object_set_new(json_object_get(report,
			    "client_cert") ? json_object_get(report,
			    "client_cert") : report, "chain", sc);
		explain_ours_first(findings, nf);
	}
 out:
	json_object_set_new(report, "findings", findings);
	json_object_set_new(report, "result",
	    esc_jstr(findings_result(findings)));
	json_decref(trace);
	attempt_free(&a);
	SSL_CTX_free(ctx);
	sk_X509_pop_free(mine, X509_free);
	EVP_PKEY_free(key);
	return report;
}
