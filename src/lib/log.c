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

/*
 * " key=value" of a text line into buf[off..cap): the value under the
 * text rule (escape.c; a backslash kept: values are messages whose quoted
 * names were escaped where they were made), so a line is one event
 * whatever a peer put in a name; in double quotes (and '"' escaped) when it is empty or has a
 * space, so that no value can pose as further members ("error=... 'CN=x
 * result=ok'"). At most TEXT_VALUE_MAX bytes of a value, so the members
 * after it still fit; the line is cut only between members.
 */
#define TEXT_VALUE_MAX	2048
static size_t
text_member(char *buf, size_t cap, size_t off, const char *k, json_t *v)
{
	char *dump = json_is_string(v) ? NULL :
	    json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_ENSURE_ASCII);
	const char *t = dump ? dump : json_string_value(v);
	size_t n = dump ? strlen(dump) : json_string_length(v), room;
	int quote = n == 0 || memchr(t, ' ', n) != NULL ||
	    memchr(t, '"', n) != NULL;
	int w;

	if (t == NULL)
		t = "", n = 0;
	w = snprintf(buf + off, cap - off, " %s=%s", k, quote ? "\"" : "");
	/* room for the value's "..." and the closing quote */
	if (w < 0 || (size_t)w + 5 + quote >= cap - off) {
		free(dump);
		return off;
	}
	off += (size_t)w;
	room = cap - off - (size_t)quote;
	if (room > TEXT_VALUE_MAX + 1)
		room = TEXT_VALUE_MAX + 1;
	off += esc_text(buf + off, room, t, n, n, ESC_KEEP_BS |
	    (quote ? ESC_DQUOTE : 0));
	if (quote)
		buf[off++] = '"';
	free(dump);
	return off;
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

		json_object_set_new(line, "ts", esc_jstr(ts));
		json_object_set_new(line, "level", esc_jstr(level));
		json_object_set_new(line, "event", esc_jstr(event));
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
		char buf[8192];
		size_t off;

		off = (size_t)snprintf(buf, sizeof(buf), "%s %-5s %s", ts,
		    level, event);
		json_object_foreach(o, k, v)
			off = text_member(buf, sizeof(buf) - 1, off, k, v);
		buf[off++] = '\n';
		write_all(buf, off);
	}
	free(s);
	if (fields == NULL)
		json_decref(o);
}
