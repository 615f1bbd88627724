/*
 * The doctor's text output, rendered from the JSON report so that text and
 * --json always carry the same facts. Lines wrap at 80 columns; colour
 * only when asked (a terminal).
 */
#include <stdio.h>
#include <string.h>

#include "doctor/doctor.h"

#define WIDTH	80

static const char *
js(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

/* Prints <text> wrapped at WIDTH: the first line after <first> (already
 * <col> columns wide), the rest indented by <indent>. */
static void
wrap(FILE *f, int col, int indent, const char *text)
{
	const char *p = text;

	while (*p) {
		size_t room = col < WIDTH - 20 ? (size_t)(WIDTH - col) : 20;
		size_t n = strlen(p), cut;

		if (n <= room) {
			fprintf(f, "%s\n", p);
			return;
		}
		for (cut = room; cut > 0 && p[cut] != ' '; cut--)
			;
		if (cut == 0)
			for (cut = room; p[cut] && p[cut] != ' '; cut++)
				;
		fprintf(f, "%.*s\n%*s", (int)cut, p, indent, "");
		p += cut;
		while (*p == ' ')
			p++;
		col = indent;
	}
	fprintf(f, "\n");
}

static void
heading(FILE *f, const char *h, int color)
{
	fprintf(f, "\n%s%s%s\n", color ? "\033[1m" : "", h, color ? "\033[0m" :
	    "");
}

static void
print_trace(FILE *f, json_t *trace)
{
	size_t i;
	json_t *t;

	json_array_foreach(trace, i, t) {
		const char *d = js(t, "detail");

		fprintf(f, "%8.1f ms  %s %s%s%s\n",
		    json_real_value(json_object_get(t, "ms")),
		    strcmp(js(t, "dir"), "out") == 0 ? "->" : "<-",
		    js(t, "msg"), *d ? "  " : "", d);
	}
}

static void
print_chain(FILE *f, json_t *chain, int color)
{
	size_t i, k;
	json_t *c, *p;
	char line[600];

	json_array_foreach(chain, i, c) {
		const char *id = json_string_value(json_object_get(c,
		    "spiffe_id"));
		json_t *sans = json_object_get(c, "sans");
		const char *first_san = json_string_value(json_array_get(sans,
		    0));

		if (json_is_true(json_object_get(c, "ca")) || (id == NULL &&
		    first_san == NULL))
			id = js(c, "subject");
		else if (id == NULL)
			id = first_san;
		fprintf(f, "  %zu. ", i + 1);
		wrap(f, 5, 5, id);
		snprintf(line, sizeof(line), "issuer %s; serial %s; valid until "
		    "%s (%s)%s", js(c, "issuer"), js(c, "serial"),
		    js(c, "not_after"), js(c, "validity_text"),
		    json_is_true(json_object_get(c, "self_signed")) ?
		    "; self-signed" : "");
		fprintf(f, "     ");
		wrap(f, 5, 5, line);
		json_array_foreach(json_object_get(c, "problems"), k, p) {
			fprintf(f, "     %s!%s ", color ? "\033[33m" : "",
			    color ? "\033[0m" : "");
			wrap(f, 7, 7, json_string_value(p));
		}
	}
}

static void
print_list(FILE *f, const char *label, json_t *a)
{
	char buf[2048];
	size_t i, o = 0;
	json_t *v;

	buf[0] = '\0';
	json_array_foreach(a, i, v)
		o += (size_t)snprintf(buf + o, o < sizeof(buf) ? sizeof(buf) - o :
		    0, "%s%s", i ? "; " : "", json_string_value(v));
	fprintf(f, "  %s ", label);
	wrap(f, 3 + (int)strlen(label), 4, json_array_size(a) ? buf :
	    "(none)");
}

static void
print_client_cert(FILE *f, json_t *cc)
{
	json_t *v;

	if (!json_is_true(json_object_get(cc, "requested"))) {
		fprintf(f, "  the server did not ask for one\n");
		return;
	}
	fprintf(f, "  the server asked for one\n");
	print_list(f, "accepted CAs:", json_object_get(cc, "ca_names"));
	print_list(f, "signature algorithms:",
	    json_object_get(cc, "signature_algorithms"));
	if (json_object_get(cc, "ours")) {
		fprintf(f, "  ours: ");
		wrap(f, 8, 4, js(cc, "ours"));
		if ((v = json_object_get(cc, "chains_to_named_ca")) != NULL)
			fprintf(f, "  issued under a CA it named: %s\n",
			    json_is_true(v) ? "yes" : "no");
	}
	fprintf(f, "  sent: %s\n", json_is_true(json_object_get(cc, "sent")) ?
	    "yes" : "no (empty Certificate)");
	if ((v = json_object_get(cc, "accepted")) != NULL)
		fprintf(f, "  accepted by the server: %s\n", json_is_true(v) ?
		    "yes" : "no");
}

static void
print_findings(FILE *f, json_t *findings, int color)
{
	size_t i;
	json_t *x;
	char head[200];

	json_array_foreach(findings, i, x) {
		const char *sev = js(x, "severity");
		const char *code = json_string_value(json_object_get(x, "code"));
		const char *fix = json_string_value(json_object_get(x, "fix"));
		int err = strcmp(sev, "error") == 0, warn = strcmp(sev,
		    "warn") == 0;
		const char *tag = err ? "ERROR" : warn ? "warn " : "ok   ";
		const char *c1 = !color ? "" : err ? "\033[31m" : warn ?
		    "\033[33m" : "\033[32m";

		snprintf(head, sizeof(head), "%s%s", code ? code : "",
		    code ? ": " : "");
		fprintf(f, "  %s%s%s %s", c1, tag, color ? "\033[0m" : "", head);
		wrap(f, 8 + (int)strlen(head), 8, js(x, "text"));
		if (fix) {
			fprintf(f, "        fix: ");
			wrap(f, 13, 13, fix);
		}
	}
}

/* The report <r>, every string already under the text rule. */
static void
print_report(FILE *f, json_t *r, int color, int live)
{
	json_t *v, *tls;
	const char *res = js(r, "result");

	if ((v = json_object_get(r, "target")) != NULL && !live) {
		fprintf(f, "mtls doctor connect %s", json_string_value(v));
		if (json_object_get(r, "servername") &&
		    !json_is_null(json_object_get(r, "servername")))
			fprintf(f, " (SNI %s)", js(r, "servername"));
		fprintf(f, "\n");
		if (json_is_string(json_object_get(r, "expect")))
			fprintf(f, "  expecting %s\n", js(r, "expect"));
		fprintf(f, "  trusting %s\n", json_is_string(
		    json_object_get(r, "ca")) ? js(r, "ca") :
		    "(no bundle: chain not verified)");
	}
	if ((v = json_object_get(r, "file")) != NULL)
		fprintf(f, "mtls doctor files %s\n", json_string_value(v));
	if ((v = json_object_get(r, "trace")) != NULL && !live &&
	    json_array_size(v)) {
		heading(f, "handshake:", color);
		print_trace(f, v);
	}
	if ((tls = json_object_get(r, "tls")) != NULL) {
		char line[400];

		snprintf(line, sizeof(line), "%s, %s, group %s, server "
		    "signature %s", js(tls, "version"), js(tls, "cipher"),
		    *js(tls, "group") ? js(tls, "group") : "(none)",
		    *js(tls, "signature") ? js(tls, "signature") : "(none)");
		heading(f, "negotiated:", color);
		fprintf(f, "  ");
		wrap(f, 2, 2, line);
	}
	if ((v = json_object_get(r, "server_chain")) != NULL) {
		heading(f, "server chain:", color);
		print_chain(f, v, color);
	}
	if ((v = json_object_get(r, "chain")) != NULL) {
		heading(f, "certificates:", color);
		print_chain(f, v, color);
	}
	if ((v = json_object_get(r, "client_cert")) != NULL) {
		heading(f, "client certificate:", color);
		print_client_cert(f, v);
	}
	if ((v = json_object_get(r, "http")) != NULL) {
		heading(f, "HTTP answer to GET /:", color);
		fprintf(f, "  %s\n", js(v, "status_line"));
	}
	if ((v = json_object_get(r, "findings")) != NULL &&
	    json_array_size(v)) {
		heading(f, "findings:", color);
		print_findings(f, v, color);
	}
	fprintf(f, "\nresult: %s%s%s\n", !color ? "" : strcmp(res, "ok") == 0 ?
	    "\033[32m" : "\033[31m", res, color ? "\033[0m" : "");
}

/* Names, DNs, status lines and reasons in the report came from a server or
 * a file, unverified: the text rendering prints them under escape.c's text
 * rule only (no control byte, no byte >= 0x80 reaches the terminal). */
void
doctor_print(FILE *f, json_t *r, int color, int live)
{
	json_t *t = esc_text_tree(r);

	if (t == NULL) {
		fprintf(f, "mtls doctor: out of memory\n");
		return;
	}
	print_report(f, t, color, live);
	json_decref(t);
}
