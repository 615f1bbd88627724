/*
 * log.c: one line per event on stderr, JSON (every member escaped by the
 * JSON rule) or text (values escaped by the text rule, quoted when they
 * hold a space), nothing at all when logging is off.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "internal.h"

/* Runs <fn> with stderr going to a file; returns what it wrote. */
static char *
capture(void (*fn)(void))
{
	char path[] = "/tmp/mtls-log-XXXXXX", *buf;
	int fd = mkstemp(path), saved = dup(STDERR_FILENO);
	off_t n;

	assert_true(fd >= 0 && saved >= 0);
	unlink(path);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	n = lseek(fd, 0, SEEK_END);
	assert_non_null(buf = calloc(1, (size_t)n + 1));
	assert_int_equal(pread(fd, buf, (size_t)n, 0), n);
	close(fd);
	return buf;
}

static void
emit_peer(void)
{
	json_t *f = json_object();

	json_object_set_new(f, "peer", esc_jstr("spiffe://x/a b\x1b[2J"));
	json_object_set_new(f, "bytes", json_integer(42));
	json_object_set_new(f, "empty", esc_jstr(""));
	log_emit("warn", "conn_refused", f);
	json_decref(f);
	log_emit("info", "bare", NULL);
}

static void
test_json(void **state)
{
	json_t *line;
	char *out, *nl;

	(void)state;
	log_set_off(0);
	log_set_format(1);
	out = capture(emit_peer);
	assert_non_null(nl = strchr(out, '\n'));
	*nl = '\0';
	assert_non_null(line = json_loads(out, 0, NULL));
	assert_string_equal(json_string_value(json_object_get(line, "level")),
	    "warn");
	assert_string_equal(json_string_value(json_object_get(line, "event")),
	    "conn_refused");
	assert_int_equal(json_integer_value(json_object_get(line, "bytes")), 42);
	/* the escape byte is data, never a terminal control */
	assert_null(strchr(out, '\x1b'));
	assert_int_equal(strlen(json_string_value(json_object_get(line, "ts"))),
	    24);
	json_decref(line);
	assert_non_null(strstr(nl + 1, "\"event\":\"bare\"}\n"));
	free(out);
}

static void
test_text(void **state)
{
	char *out;

	(void)state;
	log_set_format(0);
	out = capture(emit_peer);
	assert_non_null(strstr(out, " warn  conn_refused"));	/* level padded to 5 */
	assert_non_null(strstr(out, " peer=\"spiffe://x/a b\\x1b[2J\""));
	assert_non_null(strstr(out, " bytes=42"));
	assert_non_null(strstr(out, " empty=\"\""));
	assert_null(strchr(out, '\x1b'));
	free(out);
}

static void
emit_hot(void)
{
	static const char m[] = "\"status\":200,\"route\":\"/api\"";

	assert_int_equal(log_json_line("info", "access", m, sizeof(m) - 1), 0);
	assert_int_equal(log_json_line("info", "tick", "", 0), 0);
}

static void
emit_hot_text(void)
{
	assert_int_equal(log_json_line("info", "access", "\"a\":1", 5), -1);
}

static void
test_json_line(void **state)
{
	json_t *line;
	char *out, *nl;

	(void)state;
	log_set_format(1);
	out = capture(emit_hot);
	assert_non_null(nl = strchr(out, '\n'));
	*nl = '\0';
	assert_non_null(line = json_loads(out, 0, NULL));
	assert_int_equal(json_integer_value(json_object_get(line, "status")),
	    200);
	assert_string_equal(json_string_value(json_object_get(line, "route")),
	    "/api");
	json_decref(line);
	assert_non_null(line = json_loads(nl + 1, JSON_DISABLE_EOF_CHECK, NULL));
	assert_string_equal(json_string_value(json_object_get(line, "event")),
	    "tick");
	json_decref(line);
	free(out);
	/* text format: the caller formats the line itself */
	log_set_format(0);
	out = capture(emit_hot_text);
	assert_string_equal(out, "");
	free(out);
}

static void
test_off(void **state)
{
	char *out;

	(void)state;
	log_set_off(1);
	log_set_format(1);
	out = capture(emit_peer);
	assert_string_equal(out, "");
	free(out);
	out = capture(emit_hot);
	assert_string_equal(out, "");
	free(out);
	log_set_off(0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_json),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_json_line),
		cmocka_unit_test(test_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
