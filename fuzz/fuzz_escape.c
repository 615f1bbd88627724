/*
 * The text and JSON escaping of names (escape.c) on any bytes. The first
 * two bytes pick the output room and the value cap; the rest is the name.
 * Checks what logs, cert inspect and the doctor rely on:
 *   text  no byte below 0x20, 0x7f or above; a backslash only as the start
 *         of \xNN (unless ESC_KEEP_BS); a quote only when not asked to
 *         escape it; never past <cap>, always terminated; whole input
 *         fits 4n+1; esc_text_tree gives the same strings;
 *   JSON  esc_json never NULL; its dump parses back to the same value; a
 *         valid UTF-8 name without NUL is kept as it is;
 *   line  esc_json_put's literal is ASCII, parses as one JSON string, stays
 *         within its room and its cap, and is whole even when cut.
 */
#include <ctype.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "internal.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define CHECK(c) do { if (!(c)) abort(); } while (0)

static int
valid_utf8(const unsigned char *p, size_t n)
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

static void
check_text(const char *o, size_t len, unsigned flags)
{
	size_t i;

	CHECK(strlen(o) == len);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)o[i];

		CHECK(c >= 0x20 && c < 0x7f);
		if ((flags & ESC_DQUOTE))
			CHECK(c != '"');
		if ((flags & ESC_SPACE))
			CHECK(c != ' ');
		if (c == '\\' && !(flags & ESC_KEEP_BS)) {
			CHECK(i + 4 <= len && o[i + 1] == 'x' &&
			    isxdigit((unsigned char)o[i + 2]) &&
			    isxdigit((unsigned char)o[i + 3]));
			i += 3;
		}
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const unsigned fl[] = { 0, ESC_SQUOTE | ESC_DQUOTE | ESC_SPACE,
	    ESC_KEEP_BS, ESC_KEEP_BS | ESC_DQUOTE };
	const unsigned char *p = data + 2;
	size_t n, cap, max, len, i;
	char out[600], *full, line[700], *flit;
	size_t flen;
	json_t *j, *back, *tree;
	json_error_t je;
	char *dump;

	if (size < 2)
		return 0;
	n = size - 2;
	cap = 1 + data[0] % sizeof(out);
	max = data[1] < 250 ? data[1] : SIZE_MAX;

	/* text: bounded */
	for (i = 0; i < sizeof(fl) / sizeof(fl[0]); i++) {
		len = esc_text(out, cap, p, n, max, fl[i]);
		CHECK(len < cap);
		check_text(out, len, fl[i]);
	}
	/* text: whole */
	full = esc_text_dup(p, n, 0);
	CHECK(full != NULL);
	len = strlen(full);
	CHECK(len <= 4 * n);
	CHECK(len < 3 || n == 0 || strcmp(full + len - 3, "...") != 0 ||
	    (n >= 3 && memcmp(p + n - 3, "...", 3) == 0));
	check_text(full, len, 0);
	free(full);

	/* JSON: never NULL, round trip, UTF-8 kept as it is */
	j = esc_json(p, n);
	CHECK(j != NULL && json_is_string(j));
	if (valid_utf8(p, n)) {
		CHECK(json_string_length(j) == n);
		CHECK(memcmp(json_string_value(j), p, n) == 0);
	}
	dump = json_dumps(j, JSON_ENCODE_ANY | JSON_ENSURE_ASCII);
	CHECK(dump != NULL);
	back = json_loads(dump, JSON_DECODE_ANY, &je);
	CHECK(back != NULL && json_equal(back, j));
	json_decref(back);
	free(dump);
	/* the text rendering of the JSON value: ASCII, no control byte */
	tree = esc_text_tree(j);
	CHECK(tree != NULL);
	check_text(json_string_value(tree), json_string_length(tree),
	    ESC_KEEP_BS);
	json_decref(tree);

	/* the access line's literal: whole, ASCII, within room and cap; not
	 * cut, it is the whole literal */
	flit = malloc(12 * n + 8);
	CHECK(flit != NULL);
	flen = esc_json_put(flit, 12 * n + 8, 0, p, n, SIZE_MAX);
	back = json_loadb(flit, flen, JSON_DECODE_ANY, &je);
	CHECK(back != NULL && json_equal(back, j));
	json_decref(back);
	len = esc_json_put(line, cap, 0, p, n, max);
	CHECK(len <= cap);
	if (cap >= 5) {
		CHECK(len >= 2 && line[0] == '"' && line[len - 1] == '"');
		CHECK(len - 2 <= (max > 3 ? max : 3));
		for (i = 0; i < len; i++)
			CHECK((unsigned char)line[i] >= 0x20 &&
			    (unsigned char)line[i] < 0x7f);
		back = json_loadb(line, len, JSON_DECODE_ANY, &je);
		CHECK(back != NULL && json_is_string(back));
		/* the whole literal, or one cut with "..." */
		if (len != flen || memcmp(line, flit, len) != 0)
			CHECK(len >= 5 && memcmp(line + len - 4, "...\"", 4) ==
			    0);
		json_decref(back);
	} else
		CHECK(len == 0);
	free(flit);
	json_decref(j);
	return 0;
}
