/* escape.c: the text and JSON rules for names. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "internal.h"

static void
test_text(void **state)
{
	char out[64];

	(void)state;
	esc_text(out, sizeof(out), "a\x1b[2J\n\\ 'q\"\xc3\xa9\x7f", 14,
	    SIZE_MAX, 0);
	assert_string_equal(out,
	    "a\\x1b[2J\\x0a\\x5c 'q\"\\xc3\\xa9\\x7f");
	esc_text(out, sizeof(out), "a\\b \"c'", 7, SIZE_MAX,
	    ESC_KEEP_BS | ESC_DQUOTE);
	assert_string_equal(out, "a\\b \\x22c'");
	esc_text(out, sizeof(out), "a b'", 4, SIZE_MAX,
	    ESC_SPACE | ESC_SQUOTE);
	assert_string_equal(out, "a\\x20b\\x27");
	/* NUL inside the length is a byte like any other */
	assert_int_equal(esc_text(out, sizeof(out), "a\0b", 3, SIZE_MAX, 0),
	    6);
	assert_string_equal(out, "a\\x00b");
}

static void
test_text_cut(void **state)
{
	char out[8];

	(void)state;
	/* exactly fits: no "..." */
	esc_text(out, sizeof(out), "abcdefg", 7, SIZE_MAX, 0);
	assert_string_equal(out, "abcdefg");
	esc_text(out, sizeof(out), "abcdefgh", 8, SIZE_MAX, 0);
	assert_string_equal(out, "abcd...");
	/* never half an escape */
	esc_text(out, sizeof(out), "a\n\n", 3, SIZE_MAX, 0);
	assert_string_equal(out, "a...");
	/* <max> input bytes */
	esc_text(out, sizeof(out), "abcdef", 6, 2, 0);
	assert_string_equal(out, "ab...");
	esc_text(out, 1, "abc", 3, SIZE_MAX, 0);
	assert_string_equal(out, "");
}

static void
want_json(const char *in, size_t n, const char *want, size_t wn)
{
	json_t *j = esc_json(in, n);

	assert_non_null(j);
	assert_int_equal(json_string_length(j), wn);
	assert_memory_equal(json_string_value(j), want, wn);
	json_decref(j);
}

static void
test_json(void **state)
{
	json_t *j;

	(void)state;
	/* valid UTF-8, controls included, kept */
	want_json("caf\xc3\xa9 \x1b\n", 8, "caf\xc3\xa9 \x1b\n", 8);
	want_json("\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80", 4);
	/* what json_string() refuses: the text \xNN, never NULL */
	assert_null(json_string("api.ex\x80mple.org"));
	want_json("api.ex\x80mple.org", 15, "api.ex\\x80mple.org", 18);
	want_json("\xed\xa0\x80", 3, "\\xed\\xa0\\x80", 12);	/* surrogate */
	want_json("\xc0\xaf", 2, "\\xc0\\xaf", 8);		/* overlong */
	want_json("\xf4\x90\x80\x80", 4, "\\xf4\\x90\\x80\\x80", 16);
	want_json("\xc3", 1, "\\xc3", 4);			/* cut short */
	want_json("a\0b", 3, "a\\x00b", 6);
	j = esc_jstr(NULL);
	assert_true(json_is_null(j));
	json_decref(j);
}

static void
want_put(const char *in, size_t n, size_t cap, size_t max, const char *want)
{
	char buf[256];
	size_t len;
	json_t *back;
	json_error_t e;

	memset(buf, 'Z', sizeof(buf));
	len = esc_json_put(buf, cap, 0, in, n, max);
	assert_true(len <= cap);
	assert_int_equal(len, strlen(want));
	assert_memory_equal(buf, want, len);
	if (len) {
		back = json_loadb(buf, len, JSON_DECODE_ANY, &e);
		assert_non_null(back);
		json_decref(back);
	}
}

static void
test_json_put(void **state)
{
	(void)state;
	want_put("a\"b\\c\n", 6, 64, SIZE_MAX, "\"a\\\"b\\\\c\\u000a\"");
	want_put("caf\xc3\xa9", 5, 64, SIZE_MAX, "\"caf\\u00e9\"");
	want_put("\xf0\x9f\x98\x80", 4, 64, SIZE_MAX, "\"\\ud83d\\ude00\"");
	want_put("\x80", 1, 64, SIZE_MAX, "\"\\\\x80\"");
	want_put("\x7f", 1, 64, SIZE_MAX, "\"\\u007f\"");
	/* cut inside the quotes, never mid-escape */
	want_put("abcdefghij", 10, 64, 6, "\"abc...\"");
	want_put("\x80\x80\x80", 3, 12, SIZE_MAX, "\"\\\\x80...\"");
	want_put("abcdef", 6, 8, SIZE_MAX, "\"abcdef\"");
	want_put("abcdefg", 7, 8, SIZE_MAX, "\"abc...\"");
	/* less than "..." left: nothing written */
	want_put("abc", 3, 4, SIZE_MAX, "");
}

static void
test_tree(void **state)
{
	json_t *r, *t;

	(void)state;
	r = json_pack("{s:s, s:[s, s], s:i, s:n}", "status_line",
	    "HTTP/1.1 400 \x1b[2J", "sans", "dns:a\\x80b", "caf\xc3\xa9",
	    "n", 3, "x");
	assert_non_null(r);
	t = esc_text_tree(r);
	assert_non_null(t);
	assert_string_equal(json_string_value(json_object_get(t,
	    "status_line")), "HTTP/1.1 400 \\x1b[2J");
	assert_string_equal(json_string_value(json_array_get(
	    json_object_get(t, "sans"), 0)), "dns:a\\x80b");
	assert_string_equal(json_string_value(json_array_get(
	    json_object_get(t, "sans"), 1)), "caf\\xc3\\xa9");
	assert_int_equal(json_integer_value(json_object_get(t, "n")), 3);
	assert_true(json_is_null(json_object_get(t, "x")));
	json_decref(t);
	json_decref(r);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_text_cut),
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_json_put),
		cmocka_unit_test(test_tree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
