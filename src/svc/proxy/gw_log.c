/*
 * The gateway's log lines (gw_int.h): one "request" line per exchange
 * (the access log) and the "handshake" and "close" lines of a connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "proxy/gw_int.h"

/* ---- the access log ---- */

/* One "request" line: built by hand in JSON mode (jansson's object and
 * dump are a measurable part of a small request: bench/RESULTS.md), through
 * log_emit() in text mode. Each value has its own cap (esc_json_put cuts
 * it with "..." inside its quotes), and the caps add up to less than b:
 * the line is always whole JSON, with every member, whatever the bytes. */
#define AL_NAME		256	/* listener, route (from the config) */
#define AL_SHORT	160	/* client address, method, error code */
#define AL_PATH		6144	/* path[2048]: up to 5 bytes each */
#define AL_PEER		2200	/* an identity: visible ASCII, <= 2048 */
#define AL_MSG		1536	/* err_msg[300] */
static size_t
al_str(char *b, size_t cap, size_t n, const char *v, size_t max)
{
	if (v != NULL)
		return esc_json_put(b, cap, n, v, strlen(v), max);
	if (n + 4 <= cap) {
		memcpy(b + n, "null", 4);
		n += 4;
	}
	return n;
}

void
access_log(struct gwc *c, int status)
{
	char b[16384];
	size_t n = 0;
	int64_t now = net_now_ms();
	struct route *rt = c->route ? c->route : &c->gw->none;
	const char *level = status >= 500 ? "warn" : "info";
	const char *peer = c->verified ? c->peer_id : NULL;
	json_t *o;

	if (status >= 100 && status < 600)
		bump(&rt->m_code[status]);
	if (c->gw->l->no_access_log)
		return;
	_Static_assert(2 * AL_NAME + 3 * AL_SHORT + AL_PATH + AL_PEER + AL_MSG +
	    512 < sizeof(b), "the access line's caps fit its buffer");
#define PUT(...) do { \
	int k_ = snprintf(b + n, sizeof(b) - n, __VA_ARGS__); \
	n = k_ < 0 ? n : n + (size_t)k_ < sizeof(b) ? n + (size_t)k_ : \
	    sizeof(b) - 1; \
} while (0)
#define STR(k, v, max) do { PUT("\"%s\":", k); \
	n = al_str(b, sizeof(b) - 1, n, v, max); PUT(","); } while (0)
	STR("listener", c->gw->l->name, AL_NAME);
	STR("route", rt->name[0] ? rt->name : NULL, AL_NAME);
	STR("client", c->client, AL_SHORT);
	STR("peer_id", peer, AL_PEER);
	STR("method", c->rq.method, AL_SHORT);
	STR("path", c->rq.path, AL_PATH);
	PUT("\"status\":%d,\"bytes_in\":%llu,\"bytes_out\":%llu,", status,
	    (unsigned long long)c->rq.body, (unsigned long long)c->rs.body);
	if (c->t_up)
		PUT("\"upstream_ms\":%lld,", (long long)(now - c->t_up));
	PUT("\"total_ms\":%lld", (long long)(now - c->t_req));
	if (c->have_up || c->t_up)
		PUT(",\"upstream_reused\":%s", c->up_reused ? "true" : "false");
	if (c->rq.code[0]) {
		PUT(",");
		STR("error", c->rq.code, AL_SHORT);
		PUT("\"message\":");
		n = esc_json_put(b, sizeof(b) - 1, n, c->rq.msg,
		    strlen(c->rq.msg), AL_MSG);
	}
	if (c->result != NULL)
		PUT(",\"result\":\"%s\"", c->result);
#undef STR
#undef PUT
	if (log_json_line(level, "request", b, n) == 0)
		return;
	/* text format: the same members through log_emit */
	o = json_object();
	json_object_set_new(o, "listener", esc_jstr(c->gw->l->name));
	json_object_set_new(o, "route", esc_jstr(rt->name[0] ? rt->name :
	    NULL));
	json_object_set_new(o, "client", esc_jstr(c->client));
	json_object_set_new(o, "peer_id", esc_jstr(peer));
	json_object_set_new(o, "method", esc_jstr(c->rq.method));
	json_object_set_new(o, "path", esc_jstr(c->rq.path));
	json_object_set_new(o, "status", json_integer(status));
	json_object_set_new(o, "bytes_in", json_integer((json_int_t)
	    c->rq.body));
	json_object_set_new(o, "bytes_out", json_integer((json_int_t)
	    c->rs.body));
	json_object_set_new(o, "total_ms", json_integer(now - c->t_req));
	if (c->rq.code[0]) {
		json_object_set_new(o, "error", esc_jstr(c->rq.code));
		json_object_set_new(o, "message", esc_jstr(c->rq.msg));
	}
	if (c->result != NULL)
		json_object_set_new(o, "result", esc_jstr(c->result));
	log_emit(level, "request", o);
	json_decref(o);
}

/* ---- a connection's handshake and close lines ---- */

void
log_conn(struct gwc *c, const char *event, int ok, int64_t hs_us)
{
	json_t *o = json_object();
	struct mtls *t = c->cl.tls;

	json_object_set_new(o, "listener", esc_jstr(c->gw->l->name));
	json_object_set_new(o, "role", json_string("server"));
	json_object_set_new(o, "client", esc_jstr(c->client));
	json_object_set_new(o, "peer_id", c->peer_id ?
	    esc_jstr(c->peer_id) : json_null());
	json_object_set_new(o, "serial", mtls_peer_serial(t) ?
	    esc_jstr(mtls_peer_serial(t)) : json_null());
	if (strcmp(event, "handshake") == 0) {
		if (ok) {
			json_object_set_new(o, "tls_version",
			    esc_jstr(mtls_conn_version(t)));
			json_object_set_new(o, "cipher",
			    esc_jstr(mtls_conn_cipher(t)));
			json_object_set_new(o, "group",
			    esc_jstr(mtls_conn_group(t)));
			json_object_set_new(o, "resumed",
			    json_boolean(mtls_conn_resumed(t)));
			json_object_set_new(o, "alpn",
			    esc_jstr(mtls_conn_alpn(t)));
			json_object_set_new(o, "verified",
			    json_boolean(c->verified));
		}
		json_object_set_new(o, "handshake_us", json_integer(hs_us));
		json_object_set_new(o, "result", esc_jstr(ok ? "ok" :
		    mtls_fail_name(mtls_fail_code(t) ? mtls_fail_code(t) :
		    MTLS_FAIL_NOT_TLS)));
		if (!ok || (!c->verified && c->fail))
			json_object_set_new(o, "error",
			    esc_jstr(mtls_error(t)));
	} else {
		uint64_t in = 0, out = 0;

		mtls_conn_wire_bytes(t, &in, &out);
		json_object_set_new(o, "bytes_in", json_integer((json_int_t)in));
		json_object_set_new(o, "bytes_out",
		    json_integer((json_int_t)out));
		json_object_set_new(o, "duration_ms", json_integer(net_now_ms() -
		    c->t_conn));
	}
	log_emit(ok ? "info" : "warn", event, o);
	json_decref(o);
}
