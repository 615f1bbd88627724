/* fsatomic.c and secret.c: atomic writes, modes, no overwrite, caps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include "internal.h"

static char dir[256];

/*
 * The attacker between a check and a read: armed, the first stat() or
 * lstat() of <swap_path> (the library's look at a file by its name)
 * renames <swap_with> over it right after, as another user who can write
 * the folder would. Unarmed, both are the plain calls.
 */
static const char *swap_path, *swap_with;

static void
swap_now(const char *p)
{
	if (swap_path != NULL && strcmp(p, swap_path) == 0) {
		swap_path = NULL;
		assert_int_equal(rename(swap_with, p), 0);
	}
}

int
stat(const char *restrict p, struct stat *restrict st)
{
	int r = fstatat(AT_FDCWD, p, st, 0);

	swap_now(p);
	return r;
}

int
lstat(const char *restrict p, struct stat *restrict st)
{
	int r = fstatat(AT_FDCWD, p, st, AT_SYMLINK_NOFOLLOW);

	swap_now(p);
	return r;
}

static int
setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/mtls-unit-XXXXXX");
	return mkdtemp(dir) ? 0 : -1;
}

static int
teardown(void **state)
{
	char cmd[300];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static int
leftovers(void)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	while (d && (e = readdir(d)) != NULL)
		if (strstr(e->d_name, ".tmp-") != NULL)
			n++;
	if (d)
		closedir(d);
	return n;
}

static void
test_write(void **state)
{
	struct mtls_error err;
	char p[300];
	struct stat st;
	uint8_t *buf;
	size_t len;

	(void)state;
	snprintf(p, sizeof(p), "%s/key.pem", dir);
	assert_int_equal(fs_write_atomic(p, "secret", 6, 0600, 0, &err), 0);
	assert_int_equal(stat(p, &st), 0);
	assert_int_equal(st.st_mode & 0777, 0600);
	assert_int_equal(fs_write_atomic(p, "other", 5, 0600, 0, &err), -1);
	assert_non_null(strstr(err.msg, "already exists"));
	assert_int_equal(fs_read(p, 100, &buf, &len, &err), 0);
	assert_int_equal(len, 6);
	assert_memory_equal(buf, "secret", 6);
	free(buf);
	assert_int_equal(fs_write_atomic(p, "other", 5, 0644, 1, &err), 0);
	assert_int_equal(fs_read(p, 100, &buf, &len, &err), 0);
	assert_memory_equal(buf, "other", 5);
	free(buf);
	assert_int_equal(leftovers(), 0);
	snprintf(p, sizeof(p), "%s/missing/x.pem", dir);
	assert_int_equal(fs_write_atomic(p, "x", 1, 0600, 0, &err), -1);
	assert_non_null(strstr(err.msg, "missing"));
	assert_int_equal(leftovers(), 0);
}

static void
test_read_limits(void **state)
{
	struct mtls_error err;
	char p[300];
	uint8_t *buf;
	size_t len;

	(void)state;
	snprintf(p, sizeof(p), "%s/big", dir);
	assert_int_equal(fs_write_atomic(p, "0123456789", 10, 0644, 1, &err), 0);
	assert_int_equal(fs_read(p, 5, &buf, &len, &err), -1);
	assert_non_null(strstr(err.msg, "limit"));
	assert_int_equal(fs_read(dir, 100, &buf, &len, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file (a directory)"));
	/* a FIFO is refused at once, not waited on for a writer (issue 18) */
	snprintf(p, sizeof(p), "%s/fifo", dir);
	assert_int_equal(mkfifo(p, 0600), 0);
	assert_int_equal(fs_read(p, 100, &buf, &len, &err), -1);
	assert_non_null(strstr(err.msg, "fifo: not a regular file (a FIFO)"));
	assert_int_equal(err.code, MTLS_ERR_IO);
	/* a symlink to a regular file is read */
	snprintf(p, sizeof(p), "%s/link", dir);
	{
		char target[300];

		snprintf(target, sizeof(target), "%s/big", dir);
		assert_int_equal(symlink(target, p), 0);
	}
	assert_int_equal(fs_read(p, 100, &buf, &len, &err), 0);
	assert_int_equal(len, 10);
	free(buf);
	snprintf(p, sizeof(p), "%s/nope", dir);
	assert_int_equal(fs_read(p, 100, &buf, &len, &err), -1);
	assert_int_equal(err.code, MTLS_ERR_IO);
}

static void
test_pass_file(void **state)
{
	struct mtls_secret s = { NULL, 0 };
	struct mtls_error err;
	char p[300];

	(void)state;
	snprintf(p, sizeof(p), "%s/pass", dir);
	assert_int_equal(fs_write_atomic(p, "hunter2\nignored\n", 16, 0600, 1,
	    &err), 0);
	assert_int_equal(secret_load_pass(&s, p, &err), 0);
	assert_int_equal(s.len, 7);
	assert_memory_equal(s.p, "hunter2", 7);
	secret_clear(&s);
	assert_null(s.p);
	assert_int_equal(fs_write_atomic(p, "\n", 1, 0600, 1, &err), 0);
	assert_int_equal(secret_load_pass(&s, p, &err), -1);
	assert_non_null(strstr(err.msg, "empty"));
}

/* fs_check_private: this user's and writable by nobody else, or refused
 * naming the file and the fix */
static void
test_check_private(void **state)
{
	static const struct {
		mode_t	 mode;
		int	 want_rv;
		const char *want_msg;
	} cases[] = {
		{ 0600, 0, NULL },
		{ 0644, 0, NULL },
		{ 0700, 0, NULL },
		{ 0660, -1, "is writable by its group (mode 660): chmod go-w " },
		{ 0602, -1, "is writable by others (mode 602): chmod go-w " },
		{ 01777, -1, "is writable by others (mode 1777)" },
	};
	struct mtls_error err;
	char p[300];
	size_t i;

	(void)state;
	snprintf(p, sizeof(p), "%s/priv", dir);
	assert_int_equal(fs_write_atomic(p, "x", 1, 0600, 1, &err), 0);
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(chmod(p, cases[i].mode), 0);
		error_clear(&err);
		assert_int_equal(fs_check_private(p, "--x ", "; hint", &err),
		    cases[i].want_rv);
		if (cases[i].want_msg != NULL) {
			assert_non_null(strstr(err.msg, cases[i].want_msg));
			assert_non_null(strstr(err.msg, "--x /"));
			assert_non_null(strstr(err.msg, "/priv; hint"));
		}
	}
	assert_int_equal(chmod(p, 0600), 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(p, 65534, (gid_t)-1), 0);
		assert_int_equal(fs_check_private(p, "", "", &err), -1);
		assert_non_null(strstr(err.msg, "priv belongs to uid 65534, not "
		    "to this user (uid 0): chown 0 "));
	}
	snprintf(p, sizeof(p), "%s/missing", dir);
	assert_int_equal(fs_check_private(p, "", "", &err), -1);
	assert_int_equal(err.sys, ENOENT);
}

/* secret_load_private (the PKCS#11 PIN file, store_password_file): the
 * file judged is the file read, even when another user renames a file of
 * their own over it right after any look by name; symlinks, others' files
 * and files group or others can read or write are refused, naming the fix. */
static void
test_load_private(void **state)
{
	static const struct {
		mode_t	 mode;
		const char *want_msg;
	} cases[] = {
		{ 0640, "is readable by its group (mode 640): chmod 600 " },
		{ 0604, "is readable by others (mode 604): chmod 600 " },
		{ 0620, "is writable by its group (mode 620): chmod go-w " },
	};
	struct mtls_secret s = { NULL, 0 };
	struct mtls_error err;
	struct stat seen, now;
	char p[300], evil[300], link[300];
	size_t i;
	int rv;

	(void)state;
	snprintf(p, sizeof(p), "%s/pin", dir);
	snprintf(evil, sizeof(evil), "%s/evil", dir);
	snprintf(link, sizeof(link), "%s/pin-link", dir);
	assert_int_equal(fs_write_atomic(p, "1234\n", 5, 0600, 1, &err), 0);
	assert_int_equal(secret_load_private(&s, p, "pkcs11 PIN file ", &seen,
	    &err), 0);
	assert_int_equal(s.len, 4);
	assert_memory_equal(s.p, "1234", 4);
	assert_int_equal(stat(p, &now), 0);
	assert_true(seen.st_ino == now.st_ino && seen.st_dev == now.st_dev);
	secret_clear(&s);

	/* the swap: another user's file, its PIN of their choosing */
	assert_int_equal(fs_write_atomic(evil, "6666\n", 5, 0600, 1, &err), 0);
	if (geteuid() == 0)
		assert_int_equal(chown(evil, 65534, (gid_t)-1), 0);
	else
		assert_int_equal(chmod(evil, 0644), 0);
	swap_path = p;
	swap_with = evil;
	error_clear(&err);
	rv = secret_load_private(&s, p, "pkcs11 PIN file ", NULL, &err);
	swap_path = NULL;
	assert_true(rv == -1 || (s.len == 4 && memcmp(s.p, "1234", 4) == 0));
	secret_clear(&s);

	/* that file, at the path from the start: refused, naming the fix */
	assert_int_equal(fs_write_atomic(evil, "6666\n", 5, 0600, 1, &err), 0);
	assert_int_equal(rename(evil, p), 0);
	if (geteuid() == 0) {
		assert_int_equal(chown(p, 65534, (gid_t)-1), 0);
		assert_int_equal(secret_load_private(&s, p, "pkcs11 PIN file ",
		    NULL, &err), -1);
		assert_non_null(strstr(err.msg, "pkcs11 PIN file /"));
		assert_non_null(strstr(err.msg, "pin belongs to uid 65534, "
		    "not to this user (uid 0): chown 0 "));
		assert_null(s.p);
		assert_int_equal(chown(p, 0, (gid_t)-1), 0);
	}
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(chmod(p, cases[i].mode), 0);
		error_clear(&err);
		assert_int_equal(secret_load_private(&s, p, "store_password_file ",
		    NULL, &err), -1);
		assert_non_null(strstr(err.msg, cases[i].want_msg));
		assert_non_null(strstr(err.msg, "store_password_file /"));
		assert_null(s.p);
	}
	/* a symlink (to a good file): its target is whoever made it's choice */
	assert_int_equal(chmod(p, 0600), 0);
	assert_int_equal(symlink(p, link), 0);
	assert_int_equal(secret_load_private(&s, link, "pkcs11 PIN file ",
	    NULL, &err), -1);
	assert_non_null(strstr(err.msg, "pin-link is a symlink: give the path "
	    "of the file itself"));
	assert_null(s.p);
	/* a FIFO is refused at once, never waited on */
	assert_int_equal(unlink(link), 0);
	assert_int_equal(mkfifo(link, 0600), 0);
	assert_int_equal(secret_load_private(&s, link, "pkcs11 PIN file ",
	    NULL, &err), -1);
	assert_non_null(strstr(err.msg, "not a regular file (a FIFO)"));
	assert_int_equal(unlink(link), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_write),
		cmocka_unit_test(test_read_limits),
		cmocka_unit_test(test_pass_file),
		cmocka_unit_test(test_check_private),
		cmocka_unit_test(test_load_private),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
