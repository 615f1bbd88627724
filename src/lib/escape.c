/*
 * Bytes that came from a peer or a file (names, DNs, paths, messages that
 * quote them) on their way to a terminal, a text log line or JSON. One
 * rule each, here only:
 *
 *   text  bytes below 0x20, 0x7f, 0x80 and above, and '\' as \xNN (by
 *         flag also quotes and the space, or '\' kept in a message whose
 *         quoted names were escaped where it was made): ASCII that shows
 *         every byte and can never start a line or a terminal sequence;
 *   JSON  valid UTF-8 kept; NUL and every byte that is not part of a valid
 *         UTF-8 sequence as the four characters \xNN, so a value is always
 *         a valid JSON string (jansson's json_string() returns NULL for
 *         invalid UTF-8, and json_object_set_new() then drops the member).
 *
 * Both cut a value only between escapes, with "..." where it was cut, and
 * only when the whole value does not fit. docs/security/names.md.
 */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"

static const char hex[] = "0123456789abcdef";

size_t
esc_utf8(const unsigned char *p, size_t n, uint32_t *cp)
{
	unsigned char c = p[0], lo = 0x80, hi = 0xbf;
	size_t len, i;
	uint32_t v;

	if (n == 0)
		return 0;
	if (c < 0x80) {
		*cp = c;
		return 1;
	}
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		v = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		v = c & 0x0f;
		if (c == 0xe0)
			lo = 0xa0;	/* overlong */
		else if (c == 0xed)
			hi = 0x9f;	/* surrogates */
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		v = c & 0x07;
		if (c == 0xf0)
			lo = 0x90;	/* overlong */
		else if (c == 0xf4)
			hi = 0x8f;	/* above U+10FFFF */
	} else
		return 0;
	if (n < len)
		return 0;
	for (i = 1; i < len; i++) {
		unsigned char d = p[i];

		if (d < (i == 1 ? lo : 0x80) || d > (i == 1 ? hi : 0xbf))
			return 0;
		v = v << 6 | (d & 0x3f);
	}
	*cp = v;
	return len;
}

static int
text_esc(unsigned char c, unsigned flags)
{
	return c < 0x20 || c >= 0x7f ||
	    (c == '\\' && !(flags & ESC_KEEP_BS)) ||
	    ((flags & ESC_SQUOTE) && c == '\'') ||
	    ((flags & ESC_DQUOTE) && c == '"') ||
	    ((flags & ESC_SPACE) && c == ' ');
}

size_t
esc_text(char *out, size_t cap, const void *data, size_t n, size_t max,
    unsigned flags)
{
	const unsigned char *d = data;
	size_t i, o = 0, shown = n < max ? n : max, all = 0;
	int fits;

	if (cap == 0)
		return 0;
	for (i = 0; i < shown && all < cap; i++)
		all += text_esc(d[i], flags) ? 4 : 1;
	/* all of it fits (NUL included): no room kept for "..." */
	fits = shown == n && all < cap;
	for (i = 0; i < shown; i++) {
		int e = text_esc(d[i], flags);
		/* after this byte: room for "..." if more may follow */
		size_t need = (e ? 4 : 1) + (i + 1 < n && !fits ? 3 : 0) + 1;

		if (o + need > cap)
			break;
		if (e) {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[d[i] >> 4];
			out[o++] = hex[d[i] & 15];
		} else
			out[o++] = (char)d[i];
	}
	/* i < n: cut by <max> or by <cap>; the last byte written left room */
	if (i < n && o + 4 <= cap) {
		memcpy(out + o, "...", 3);
		o += 3;
	}
	out[o] = '\0';
	return o;
}

char *
esc_text_dup(const void *data, size_t n, unsigned flags)
{
	char *s;

	if (n > (SIZE_MAX - 1) / 4 || (s = malloc(4 * n + 1)) == NULL)
		return NULL;
	esc_text(s, 4 * n + 1, data, n, n, flags);
	return s;
}

/* The JSON rule into <out> (room for 4 * n bytes): returns its length. */
static size_t
json_clean(char *out, const unsigned char *p, size_t n)
{
	size_t i = 0, o = 0, k;
	uint32_t cp;

	while (i < n) {
		if (p[i] != 0 && (k = esc_utf8(p + i, n - i, &cp)) > 0) {
			memcpy(out + o, p + i, k);
			o += k;
			i += k;
		} else {
			out[o++] = '\\';
			out[o++] = 'x';
			out[o++] = hex[p[i] >> 4];
			out[o++] = hex[p[i] & 15];
			i++;
		}
	}
	return o;
}

/* 1 when <p> needs no change under the JSON rule. */
static int
json_clean_already(const unsigned char *p, size_t n)
{
	size_t i = 0, k;
	uint32_t cp;

	while (i < n) {
		if (p[i] == 0 || (k = esc_utf8(p + i, n - i, &cp)) == 0)
			return 0;
		i += k;
	}
	return 1;
}

json_t *
esc_json(const void *data, size_t n)
{
	json_t *j;
	char *s;

	if (json_clean_already(data, n))
		return json_stringn_nocheck(data, n);
	if (n > (SIZE_MAX - 1) / 4 || (s = malloc(4 * n + 1)) == NULL)
		return NULL;
	j = json_stringn_nocheck(s, json_clean(s, data, n));
	free(s);
	return j;
}

json_t *
esc_jstr(const char *s)
{
	return s == NULL ? json_null() : esc_json(s, strlen(s));
}

/* One unit of the ASCII JSON form of p[0..n): into u (up to 12 bytes),
 * its length; *used: input bytes it stands for. */
static size_t
json_unit(const unsigned char *p, size_t n, char *u, size_t *used)
{
	uint32_t cp;
	size_t k;

	*used = 1;
	if (p[0] == '"' || p[0] == '\\') {
		u[0] = '\\';
		u[1] = (char)p[0];
		return 2;
	}
	if (p[0] >= 0x20 && p[0] < 0x7f) {
		u[0] = (char)p[0];
		return 1;
	}
	if (p[0] == 0 || (k = esc_utf8(p, n, &cp)) == 0) {
		/* "\\xNN": the text \xNN inside the JSON string */
		memcpy(u, "\\\\x", 3);
		u[3] = hex[p[0] >> 4];
		u[4] = hex[p[0] & 15];
		return 5;
	}
	*used = k;
	if (cp >= 0x10000) {
		uint32_t v = cp - 0x10000, hs = 0xd800 | v >> 10,
		    ls = 0xdc00 | (v & 0x3ff);

		u[0] = '\\', u[1] = 'u';
		u[2] = hex[hs >> 12], u[3] = hex[hs >> 8 & 15];
		u[4] = hex[hs >> 4 & 15], u[5] = hex[hs & 15];
		u[6] = '\\', u[7] = 'u';
		u[8] = hex[ls >> 12], u[9] = hex[ls >> 8 & 15];
		u[10] = hex[ls >> 4 & 15], u[11] = hex[ls & 15];
		return 12;
	}
	u[0] = '\\', u[1] = 'u';
	u[2] = hex[cp >> 12], u[3] = hex[cp >> 8 & 15];
	u[4] = hex[cp >> 4 & 15], u[5] = hex[cp & 15];
	return 6;
}

size_t
esc_json_put(char *buf, size_t cap, size_t off, const void *data, size_t n,
    size_t max)
{
	const unsigned char *p = data;
	size_t i = 0, room, start, all, used;
	char u[12];
	int fits;

	if (off > cap || cap - off < 5)
		return off;	/* the caller's buffer holds less than "..." */
	room = cap - off - 2;	/* the two quotes */
	if (room > max)
		room = max;
	start = off;
	/* all of it fits: no room kept for "..." */
	for (i = 0, all = 0; i < n && all <= room; i += used)
		all += json_unit(p + i, n - i, u, &used);
	fits = i == n && all <= room;
	i = 0;
	buf[off++] = '"';
	while (i < n) {
		size_t k = json_unit(p + i, n - i, u, &used);
		/* room for "..." unless this unit ends the value */
		size_t need = k + (i + used < n && !fits ? 3 : 0);

		if (off - start - 1 + need > room)
			break;
		memcpy(buf + off, u, k);
		off += k;
		i += used;
	}
	if (i < n) {
		memcpy(buf + off, "...", 3);
		off += 3;
	}
	buf[off++] = '"';
	return off;
}

json_t *
esc_text_tree(json_t *v)
{
	const char *k;
	json_t *c, *x;
	size_t i;

	switch (json_typeof(v)) {
	case JSON_STRING: {
		char *s = esc_text_dup(json_string_value(v),
		    json_string_length(v), ESC_KEEP_BS);

		x = s ? json_string_nocheck(s) : NULL;
		free(s);
		return x;
	}
	case JSON_OBJECT:
		if ((c = json_object()) == NULL)
			return NULL;
		json_object_foreach(v, k, x)
			if (json_object_set_new(c, k, esc_text_tree(x)) != 0)
				goto fail;
		return c;
	case JSON_ARRAY:
		if ((c = json_array()) == NULL)
			return NULL;
		json_array_foreach(v, i, x)
			if (json_array_append_new(c, esc_text_tree(x)) != 0)
				goto fail;
		return c;
	default:
		return json_deep_copy(v);
	}
 fail:
	json_decref(c);
	return NULL;
}
