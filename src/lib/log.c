/*
 * Structured logs: one JSON object per line (the default when stderr is
 * not a terminal), or "ts event key=value ..." text for people. Each line
 * is written with one write(2), so lines from several threads never mix.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"

static int log_json = -1;	/* -1: decide from isatty(2) */
static int log_off;		/* fuzz targets: no output */

void
log_set_format(int json)
{
	log_json = json;
}

void
log_set_off(int off)
{
	log_off = off;
}

static void
ts_now(char *buf, size_t len)
{
	struct timeval tv;
	struct tm tm;
	time_t t;

	gettimeofday(&tv, NULL);
	t = tv.tv_sec;
	gmtime_r(&t, &tm);
	snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ",
	    tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, (long)(tv.tv_usec / 1000));
}

static void
write_all(const char *p, size_t n)
{
	ssize_t w;

	while (n > 0) {
		w = write(STDERR_FILENO, p, n);
		if (w <= 0)
			return;
		p += w;
		n -= (size_t)w;
	}
}

size_t
log_json_str(char *buf, size_t cap, size_t off, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)(s ? s : "");

	if (s == NULL) {
		if (off + 4 < cap) {
			memcpy(buf + off, "null", 4);
			off += 4;
		}
		return off;
	}
	if (off < cap)
		buf[off++] = '"';
	for (; *p && off + 8 < cap; p++) {
		if (*p == '"' || *p == '\\') {
			buf[off++] = '\\';
			buf[off++] = (char)*p;
		} else if (*p < 0x20 || *p >= 0x7f) {
			/* control bytes, and bytes that may not be UTF-8: as
			 * code points, so the line is always valid JSON */
			memcpy(buf + off, "\\u00", 4);
			buf[off + 4] = hex[*p >> 4];
			buf[off + 5] = hex[*p & 15];
			off += 6;
		} else
			buf[off++] = (char)*p;
	}
	if (off < cap)
		buf[off++] = '"';
	return off;
}

int
log_json_line(const char *level, const char *event, const char *members,
    size_t n)
{
	char ts[40], head[200], *line;
	int h;

	if (log_off)
		return 0;
	if (log_json < 0)
		log_json = !isatty(STDERR_FILENO);
	if (!log_json)
		return -1;
	ts_now(ts, sizeof(ts));
	h = snprintf(head, sizeof(head), "{\"ts\":\"%s\",\"level\":\"%s\","
	    "\"event\":\"%s\"%s", ts, level, event, n ? "," : "");
	if (h < 0 || (size_t)h >= sizeof(head) ||
	    (line = malloc((size_t)h + n + 2)) == NULL)
		return 0;
	memcpy(line, head, (size_t)h);
	memcpy(line + h, members, n);
	line[h + n] = '}';
	line[h + n + 1] = '\n';
	write_all(line, (size_t)h + n + 2);
	free(line);
	return 0;
}

/* <s> into <out> with bytes below 0x20, 0x7f and above as \xNN; cut to
 * fit <cap>. Unlike name_escape, spaces and quotes stay readable. */
static void
name_escape_text(const char *s, char *out, size_t cap)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *p = (const unsigned char *)s;
	size_t o = 0;

	for (; *p && o + 5 < cap; p++) {
		if (*p < 0x20 || *p >= 0x7f) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[*p >> 4];
			out[o++] = hex[*p & 15];
		} else
			out[o++] = (char)*p;
	}
	if (cap > 0)
		out[o] = '\0';
}

void
log_emit(const char *level, const char *event, struct json_t *fields)
{
	json_t *o = fields ? fields : json_object();
	char ts[40], *s = NULL;
	const char *k;
	json_t *v;

	if (o == NULL || log_off) {
		if (fields == NULL)
			json_decref(o);
		return;
	}
	if (log_json < 0)
		log_json = !isatty(STDERR_FILENO);
	ts_now(ts, sizeof(ts));
	if (log_json) {
		json_t *line = json_object();

		json_object_set_new(line, "ts", json_string(ts));
		json_object_set_new(line, "level", json_string(level));
		json_object_set_new(line, "event", json_string(event));
		json_object_update(line, o);
		s = json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER |
		    JSON_ENSURE_ASCII);
		json_decref(line);
		if (s != NULL) {
			size_t n = strlen(s);
			char *l = malloc(n + 1);

			if (l != NULL) {
				memcpy(l, s, n);
				l[n] = '\n';
				write_all(l, n + 1);
				free(l);
			}
		}
	} else {
		char buf[2048];
		size_t off;

		off = (size_t)snprintf(buf, sizeof(buf), "%s %-5s %s", ts,
		    level, event);
		json_object_foreach(o, k, v) {
			char *vs = json_is_string(v) ? NULL :
			    json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);

			if (off < sizeof(buf))
				off += (size_t)snprintf(buf + off,
				    sizeof(buf) - off, " %s=", k);
			/* a value may hold bytes from a peer (a reason
			 * quoting a name): never a raw control byte on a
			 * terminal or in a line-based log */
			if (off < sizeof(buf)) {
				const char *t = vs ? vs : json_string_value(v);

				name_escape_text(t ? t : "", buf + off,
				    sizeof(buf) - off);
				off += strlen(buf + off);
			}
			free(vs);
		}
		if (off >= sizeof(buf) - 1)
			off = sizeof(buf) - 2;
		buf[off++] = '\n';
		write_all(buf, off);
	}
	free(s);
	if (fields == NULL)
		json_decref(o);
}
