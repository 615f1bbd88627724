/*
 * store_pg.c without a server: the kind of a failed statement by its
 * SQLSTATE (store_pg_classify), which decides ca serve's answer (503 and
 * the public kind, or the request's own error) and whether the connection
 * is treated as lost.
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <string.h>
#include <cmocka.h>

#include "ca/store_int.h"

static void
want(const char *st, int lost, int sys, const char *kind)
{
	const char *k = "unset";
	int s = -1;

	assert_int_equal(store_pg_classify(st, &s, &k), lost);
	assert_int_equal(s, sys);
	if (kind == NULL)
		assert_null(k);
	else
		assert_string_equal(k, kind);
}

static void
t_lost(void **state)
{
	(void)state;
	/* no answer, connection exceptions, shutdowns: reconnect */
	want(NULL, 1, EIO, STORE_KIND_PG_DOWN);
	want("", 1, EIO, STORE_KIND_PG_DOWN);
	want("08000", 1, EIO, STORE_KIND_PG_DOWN);
	want("08003", 1, EIO, STORE_KIND_PG_DOWN);	/* no connection */
	want("08006", 1, EIO, STORE_KIND_PG_DOWN);	/* failure */
	want("08P01", 1, EIO, STORE_KIND_PG_DOWN);	/* protocol */
	want("57P01", 1, EIO, STORE_KIND_PG_DOWN);	/* admin_shutdown */
	want("57P02", 1, EIO, STORE_KIND_PG_DOWN);	/* crash_shutdown */
	want("57P03", 1, EIO, STORE_KIND_PG_DOWN);	/* cannot_connect_now */
	want("53300", 1, EIO, STORE_KIND_PG_DOWN);	/* too many conns */
	want("5310", 1, EIO, STORE_KIND_PG_DOWN);	/* not a SQLSTATE */
	want("531000", 1, EIO, STORE_KIND_PG_DOWN);
}

static void
t_kinds(void **state)
{
	(void)state;
	want("53100", 0, ENOSPC, STORE_KIND_PG_FULL);	/* disk_full */
	want("53200", 0, EIO, STORE_KIND_PG_MEMORY);	/* out_of_memory */
	want("53400", 0, EIO, STORE_KIND_PG_LIMIT);	/* config limit */
	want("25006", 0, EROFS, STORE_KIND_PG_READ_ONLY); /* standby */
	want("57014", 0, EIO, STORE_KIND_PG_BUSY);	/* statement_timeout */
	want("55P03", 0, EIO, STORE_KIND_PG_BUSY);	/* lock_timeout */
	want("40001", 0, EIO, STORE_KIND_PG_BUSY);	/* serialization */
	want("40P01", 0, EIO, STORE_KIND_PG_BUSY);	/* deadlock */
	/* the request's own error, or ours: no store fault */
	want("23505", 0, 0, NULL);			/* unique_violation */
	want("42P01", 0, 0, NULL);			/* undefined_table */
	want("22P02", 0, 0, NULL);			/* invalid text */
	/* the kinds are words a client may read: no detail */
	assert_non_null(strstr(STORE_KIND_PG_FULL, "disk full"));
	assert_non_null(strstr(STORE_KIND_PG_DOWN, "store unavailable"));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(t_lost),
		cmocka_unit_test(t_kinds),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
