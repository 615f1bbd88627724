/*
 * ca serve's inventory, read only, for --admin identities alone: the JSON
 * endpoints /v1/inventory, /v1/inventory/summary, /v1/inventory/identity
 * (docs/api.md), and the web page /ui that shows them (ui/, built into
 * the binary: ui_assets.h). Every query parameter is hostile: known keys
 * only, each once, percent-decoded into visible ASCII with a length
 * bound, then bound as an SQL parameter (store_inv.h); anything else is a
 * 400 naming the parameter. Aggregation is the store's SQL, never a loop
 * over rows here.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "ca/serve.h"
#include "ca/store_inv.h"
#include "ca/ui_assets.h"

/* Every answer of these routes: never cached, never sniffed. */
#define UI_HDR_JSON "Cache-Control: no-store\r\n" \
	"X-Content-Type-Options: nosniff\r\n"
/* The page: only its own script and style, no inline code, no frames,
 * no request anywhere but here (docs/security/ui.md). */
#define UI_HDR_PAGE UI_HDR_JSON \
	"Content-Security-Policy: default-src 'none'; script-src 'self'; " \
	"style-src 'self'; img-src 'self'; connect-src 'self'; " \
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'\r\n" \
	"Referrer-Policy: no-referrer\r\n" \
	"Cross-Origin-Resource-Policy: same-origin\r\n"

#define UI_LIMIT_DEFAULT	100
#define UI_ID_MAX		(SPIFFE_MAX + 8)	/* "dns:" ... */
/* Inventory views in flight at once. They run on ca serve's 16 workers
 * and queue on the views' one store connection: a search matching every
 * row of 100,000 takes about a second, so 48 at once held every worker
 * for 40 s and GET /v1/bundle waited 29 s behind them. The page makes at
 * most two at a time; the rest of the workers stay for issuance. */
#define UI_VIEWS_MAX		4

static int ui_views;	/* in flight (atomic) */

/* ---- the query string ---- */

struct param {
	const char	*key;
	size_t		 max;		/* decoded bytes */
	char		*val;		/* decoded; NULL when absent */
};

/* Decodes <p>[0..n) (application/x-www-form-urlencoded: %XX, '+' a
 * space) into a new string of at most <max> bytes, each visible ASCII
 * (0x21-0x7e). NULL with <why> set otherwise. */
static char *
decode(const char *p, size_t n, size_t max, const char **why)
{
	char *out;
	size_t i, k = 0;

	if ((out = malloc(n + 1)) == NULL) {
		*why = "out of memory";
		return NULL;
	}
	for (i = 0; i < n; i++) {
		int c = (unsigned char)p[i];

		if (c == '%') {
			int h, l;

			if (n - i < 3) {
				*why = "a '%' not followed by two hex digits";
				goto bad;
			}
			h = http_hexval((unsigned char)p[i + 1]);
			l = http_hexval((unsigned char)p[i + 2]);
			if (h < 0 || l < 0) {
				*why = "a '%' not followed by two hex digits";
				goto bad;
			}
			c = h * 16 + l;
			i += 2;
		} else if (c == '+')
			c = ' ';
		if (c < 0x21 || c > 0x7e) {
			*why = "a byte outside visible ASCII (space, control "
			    "or non-ASCII)";
			goto bad;
		}
		if (k == max) {
			*why = "too long";
			goto bad;
		}
		out[k++] = (char)c;
	}
	out[k] = '\0';
	return out;
 bad:
	free(out);
	return NULL;
}

static void
params_free(struct param *ps, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(ps[i].val);
		ps[i].val = NULL;
	}
}

/* Fills <ps> from the query of <req>: 0, or -1 with a 400 in <rp> (an
 * unknown or repeated key, a bad value). An empty value is absent. */
static int
params_parse(const struct http_req *req, struct param *ps, size_t n,
    struct reply *rp)
{
	const char *q = req->url ? strchr(req->url, '?') : NULL, *why = NULL;
	char key[32];
	size_t i;

	if (q == NULL)
		return 0;
	q++;
	while (*q != '\0' && *q != '#') {
		size_t len = strcspn(q, "&#"), kl = strcspn(q, "=&#");
		const char *v = q + kl;
		size_t vl = kl < len ? len - kl - 1 : 0;

		if (kl < len)
			v++;
		if (len == 0) {		/* "&&" */
			q++;
			continue;
		}
		http_esc(key, sizeof(key), q, kl, 20);
		for (i = 0; i < n; i++)
			if (strlen(ps[i].key) == kl &&
			    memcmp(ps[i].key, q, kl) == 0)
				break;
		if (i == n) {
			serve_reply_error(rp, 400, "bad_query", "unknown query "
			    "parameter '%s'", key);
			goto bad;
		}
		if (ps[i].val != NULL) {
			serve_reply_error(rp, 400, "bad_query", "query "
			    "parameter '%s' given twice", key);
			goto bad;
		}
		if ((ps[i].val = decode(v, vl, ps[i].max, &why)) == NULL) {
			serve_reply_error(rp, 400, "bad_query", "query "
			    "parameter '%s': %s (at most %zu bytes of visible "
			    "ASCII, percent-encoded)", key, why, ps[i].max);
			goto bad;
		}
		if (ps[i].val[0] == '\0') {
			free(ps[i].val);
			ps[i].val = NULL;
		}
		q += len;
		if (*q == '&')
			q++;
	}
	return 0;
 bad:
	params_free(ps, n);
	return -1;
}

/* ---- rows as JSON ---- */

struct rows {
	json_t	*items;
	int64_t	 now;
	int	 n, max, more;
	int64_t	 last_na;
	char	 last_serial[48];
};

static json_t *
ids_json(const char *ids)
{
	json_t *a = json_array();

	while (ids != NULL && *ids != '\0') {
		size_t n = strcspn(ids, "\n");

		if (n > 0)
			json_array_append_new(a, esc_json(ids, n));
		ids += n;
		if (*ids == '\n')
			ids++;
	}
	return a;
}

static int
row_cb(void *arg, const struct cert_rec *r)
{
	struct rows *w = arg;
	json_t *o;

	if (w->n == w->max) {
		w->more = 1;	/* the one past the page: there is a next */
		return 1;
	}
	o = json_object();
	json_object_set_new(o, "serial", esc_jstr(r->serial));
	json_object_set_new(o, "kind", esc_jstr(r->kind));
	json_object_set_new(o, "status", esc_jstr(r->revoked ? "revoked" :
	    r->not_after <= w->now ? "expired" : "valid"));
	json_object_set_new(o, "identities", ids_json(r->identities));
	json_object_set_new(o, "subject", esc_jstr(r->subject));
	json_object_set_new(o, "not_before", json_integer(r->not_before));
	json_object_set_new(o, "not_after", json_integer(r->not_after));
	json_object_set_new(o, "created_at", json_integer(r->created_at));
	if (r->revoked) {
		json_object_set_new(o, "revoked_at",
		    json_integer(r->revoked_at));
		json_object_set_new(o, "reason",
		    esc_jstr(crl_reason_name(r->reason)));
	}
	json_array_append_new(w->items, o);
	w->n++;
	w->last_na = r->not_after;
	snprintf(w->last_serial, sizeof(w->last_serial), "%s", r->serial);
	return 0;
}

/* The store could not answer: 503 when it is unavailable, else 500. */
static void
store_failed(struct server *s, struct reply *rp, const struct mtls_error *e)
{
	if (serve_storage_fault(e))
		serve_reply_unavailable(s, rp, "cannot read the inventory", e);
	else
		serve_reply_error(rp, 500, "internal", "%s", e->msg);
}

/* ---- the endpoints ---- */

static void
inv_list(struct server *s, const struct http_req *req, struct reply *rp)
{
	struct param ps[] = { { "q", INV_Q_MAX, NULL },
	    { "state", 16, NULL }, { "expiring_within", 16, NULL },
	    { "cursor", 80, NULL }, { "limit", 8, NULL } };
	const size_t np = sizeof(ps) / sizeof(ps[0]);
	struct inv_query q;
	struct mtls_error err;
	struct rows w;
	int64_t v;
	json_t *o;

	memset(&q, 0, sizeof(q));
	memset(&w, 0, sizeof(w));
	if (params_parse(req, ps, np, rp) != 0)
		return;
	q.now = (int64_t)time(NULL);
	q.within = 7 * 86400;
	q.limit = UI_LIMIT_DEFAULT;
	if (ps[1].val != NULL) {
		static const char *const names[] = { "", "valid", "expiring",
		    "revoked", "expired" };
		size_t i;

		for (i = 1; i < 5 && strcmp(ps[1].val, names[i]) != 0; i++)
			;
		if (i == 5) {
			serve_reply_error(rp, 400, "bad_query", "state: give "
			    "valid, expiring, revoked or expired");
			goto out;
		}
		q.state = (enum inv_state)i;
	}
	if (ps[2].val != NULL) {
		if (q.state == INV_ANY)
			q.state = INV_EXPIRING;
		if (q.state != INV_EXPIRING) {
			serve_reply_error(rp, 400, "bad_query",
			    "expiring_within goes with state=expiring only");
			goto out;
		}
		if (mtls_duration_parse(ps[2].val, &v) != 0 ||
		    v > MTLS_MAX_INTERVAL) {
			serve_reply_error(rp, 400, "bad_query",
			    "expiring_within: a duration such as 1d, 72h or "
			    "7d, at most 366d");
			goto out;
		}
		q.within = v;
	}
	if (ps[0].val != NULL) {
		snprintf(q.q, sizeof(q.q), "%s", ps[0].val);
		if (serial_canon(ps[0].val, q.q_serial,
		    sizeof(q.q_serial)) != 0)
			q.q_serial[0] = '\0';
	}
	if (ps[3].val != NULL) {
		/* ours: "<not_after>.<serial>" from next_cursor */
		char *dot = strchr(ps[3].val, '.');

		if (dot == NULL || (*dot = '\0', conf_number(ps[3].val, 0,
		    (int64_t)1 << 53, &q.c_not_after) != 0) ||
		    serial_canon(dot + 1, q.c_serial,
		    sizeof(q.c_serial)) != 0) {
			serve_reply_error(rp, 400, "bad_query", "cursor: give "
			    "the next_cursor of the previous page as it is");
			goto out;
		}
		q.has_cursor = 1;
	}
	if (ps[4].val != NULL) {
		if (conf_number(ps[4].val, 1, INV_LIMIT_MAX, &v) != 0) {
			serve_reply_error(rp, 400, "bad_query", "limit: a "
			    "number from 1 to %d", INV_LIMIT_MAX);
			goto out;
		}
		q.limit = (int)v;
	}
	w.items = json_array();
	w.now = q.now;
	w.max = q.limit;
	q.limit++;		/* one more row says whether a page follows */
	error_clear(&err);
	if (store_inv_list(rp->ca->store, &q, row_cb, &w, &err) != 0) {
		json_decref(w.items);
		store_failed(s, rp, &err);
		goto out;
	}
	o = json_object();
	json_object_set_new(o, "now", json_integer(q.now));
	json_object_set_new(o, "items", w.items);
	json_object_set_new(o, "next_cursor", w.more ?
	    json_sprintf("%lld.%s", (long long)w.last_na, w.last_serial) :
	    json_null());
	serve_reply_json(rp, 200, o);
 out:
	params_free(ps, np);
}

static json_t *
int_array(const int64_t *v, int n)
{
	json_t *a = json_array();
	int i;

	for (i = 0; i < n; i++)
		json_array_append_new(a, json_integer(v[i]));
	return a;
}

/* issued (first leaf of its identities) and renewed, per bucket */
static json_t *
rate_json(const int64_t *all, const int64_t *ren, int n, int64_t width)
{
	json_t *o = json_object(), *iss = json_array(), *rn = json_array();
	int i;

	for (i = 0; i < n; i++) {
		json_array_append_new(iss, json_integer(all[i] - ren[i]));
		json_array_append_new(rn, json_integer(ren[i]));
	}
	json_object_set_new(o, "bucket_seconds", json_integer(width));
	json_object_set_new(o, "issued", iss);
	json_object_set_new(o, "renewed", rn);
	return o;
}

static json_t *
hist_json(const int64_t *v, int n, int64_t width)
{
	json_t *o = json_object();

	json_object_set_new(o, "bucket_seconds", json_integer(width));
	json_object_set_new(o, "counts", int_array(v, n));
	return o;
}

static void
inv_summary(struct server *s, const struct http_req *req, struct reply *rp)
{
	struct inv_summary *sum;
	struct mtls_error err;
	json_t *o, *x;
	int i;

	if (params_parse(req, NULL, 0, rp) != 0)	/* none taken */
		return;
	if ((sum = calloc(1, sizeof(*sum))) == NULL) {
		serve_reply_error(rp, 500, "internal", "out of memory");
		return;
	}
	sum->now = (int64_t)time(NULL);
	error_clear(&err);
	if (store_inv_summary(rp->ca->store, sum, &err) != 0) {
		store_failed(s, rp, &err);
		free(sum);
		return;
	}
	o = json_object();
	json_object_set_new(o, "now", json_integer(sum->now));
	x = json_object();
	json_object_set_new(x, "total", json_integer(sum->total));
	json_object_set_new(x, "valid", json_integer(sum->valid));
	json_object_set_new(x, "revoked", json_integer(sum->revoked));
	json_object_set_new(x, "expired", json_integer(sum->expired));
	json_object_set_new(o, "counts", x);
	x = json_object();
	json_object_set_new(x, "1d", json_integer(sum->within[0]));
	json_object_set_new(x, "3d", json_integer(sum->within[1]));
	json_object_set_new(x, "7d", json_integer(sum->within[2]));
	json_object_set_new(o, "expiring_within", x);
	x = json_object();
	json_object_set_new(x, "hours", hist_json(sum->exp_hours,
	    INV_EXP_HOURS, 3600));
	json_object_set_new(x, "days", hist_json(sum->exp_days, INV_EXP_DAYS,
	    86400));
	json_object_set_new(x, "weeks", hist_json(sum->exp_weeks,
	    INV_EXP_WEEKS, 604800));
	json_object_set_new(o, "expiry", x);
	x = json_object();
	json_object_set_new(x, "hours", rate_json(sum->iss_hours,
	    sum->ren_hours, INV_RATE_HOURS, 3600));
	json_object_set_new(x, "days", rate_json(sum->iss_days,
	    sum->ren_days, INV_RATE_DAYS, 86400));
	json_object_set_new(o, "issuance", x);
	x = json_object();
	for (i = 0; i < INV_REASONS; i++)
		if (sum->by_reason[i] > 0)
			json_object_set_new(x, crl_reason_name(i),
			    json_integer(sum->by_reason[i]));
	json_object_set_new(o, "revocations", x);
	free(sum);
	serve_reply_json(rp, 200, o);
}

static void
inv_identity(struct server *s, const struct http_req *req, struct reply *rp)
{
	struct param ps[] = { { "id", UI_ID_MAX, NULL },
	    { "limit", 8, NULL } };
	const size_t np = sizeof(ps) / sizeof(ps[0]);
	struct mtls_error err;
	struct rows w;
	int64_t v = UI_LIMIT_DEFAULT;
	json_t *o;

	memset(&w, 0, sizeof(w));
	if (params_parse(req, ps, np, rp) != 0)
		return;
	if (ps[0].val == NULL) {
		serve_reply_error(rp, 400, "bad_query", "id: give the identity "
		    "(a SPIFFE ID, dns:NAME, ip:ADDRESS), percent-encoded");
		goto out;
	}
	if (ps[1].val != NULL && conf_number(ps[1].val, 1, INV_LIMIT_MAX,
	    &v) != 0) {
		serve_reply_error(rp, 400, "bad_query", "limit: a number from "
		    "1 to %d", INV_LIMIT_MAX);
		goto out;
	}
	w.items = json_array();
	w.now = (int64_t)time(NULL);
	w.max = (int)v;
	error_clear(&err);
	if (store_inv_identity(rp->ca->store, ps[0].val, w.max + 1, row_cb, &w,
	    &err) != 0) {
		json_decref(w.items);
		store_failed(s, rp, &err);
		goto out;
	}
	o = json_object();
	json_object_set_new(o, "now", json_integer(w.now));
	json_object_set_new(o, "id", esc_jstr(ps[0].val));
	json_object_set_new(o, "items", w.items);
	json_object_set_new(o, "truncated", json_boolean(w.more));
	serve_reply_json(rp, 200, o);
 out:
	params_free(ps, np);
}

/* /ui, /ui/ (the page), /ui/app.js, /ui/app.css; nothing else. */
static void
ui_file(const char *path, struct reply *rp)
{
	static const struct {
		const char *path, *name, *ctype;
	} files[] = {
		{ "/ui", "index.html", "text/html; charset=utf-8" },
		{ "/ui/", "index.html", "text/html; charset=utf-8" },
		{ "/ui/app.js", "app.js", "text/javascript; charset=utf-8" },
		{ "/ui/app.css", "app.css", "text/css; charset=utf-8" },
	};
	size_t i, k;

	for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
		if (strcmp(path, files[i].path) != 0)
			continue;
		for (k = 0; k < ui_assets_n; k++)
			if (strcmp(ui_assets[k].name, files[i].name) == 0) {
				serve_reply_bytes(rp, files[i].ctype,
				    ui_assets[k].data, ui_assets[k].len);
				return;
			}
	}
	serve_reply_error(rp, 404, "not_found", "no such file of the page");
}

void
serve_ui(struct server *s, struct conn *c, const struct http_req *req,
    const char *path, struct reply *rp)
{
	int page = strncmp(path, "/ui", 3) == 0;

	const char *site = http_req_header(req, "sec-fetch-site");

	/* set first: the refusals below carry them too */
	rp->headers = page ? UI_HDR_PAGE : UI_HDR_JSON;
	if (serve_admin(s, c, rp) != 0)
		return;
	if (page) {
		ui_file(path, rp);
		return;
	}
	/* the views are for the page (same-origin) and scripts (no such
	 * header): another site's <img> must not make an admin's browser
	 * run searches */
	if (site != NULL && strcmp(site, "same-origin") != 0 &&
	    strcmp(site, "none") != 0) {
		serve_reply_error(rp, 403, "cross_origin", "a request of "
		    "another site (Sec-Fetch-Site: %.20s) cannot read the "
		    "inventory: open /ui", site);
		return;
	}
	if (__atomic_add_fetch(&ui_views, 1, __ATOMIC_ACQ_REL) >
	    UI_VIEWS_MAX) {
		serve_reply_error(rp, 503, "busy", "%d inventory views are "
		    "being answered: retry in a second", UI_VIEWS_MAX);
		goto out;
	}
	if (strcmp(path, "/v1/inventory") == 0)
		inv_list(s, req, rp);
	else if (strcmp(path, "/v1/inventory/summary") == 0)
		inv_summary(s, req, rp);
	else if (strcmp(path, "/v1/inventory/identity") == 0)
		inv_identity(s, req, rp);
	else
		serve_reply_error(rp, 404, "not_found", "no route %.200s",
		    path);
 out:
	__atomic_sub_fetch(&ui_views, 1, __ATOMIC_ACQ_REL);
}
