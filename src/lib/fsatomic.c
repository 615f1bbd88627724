/*
 * Whole-file reads with a size cap, and atomic writes: a temporary file in
 * the target's folder, fsync, rename (RENAME_NOREPLACE unless overwriting),
 * fsync of the folder. A reader never sees a half-written file and a crash
 * leaves either the old file or the new one.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "internal.h"

/* What a non-regular file is, for the message that refuses it. */
static const char *
file_kind(mode_t m)
{
	if (S_ISDIR(m))
		return "a directory";
	if (S_ISFIFO(m))
		return "a FIFO";
	if (S_ISSOCK(m))
		return "a socket";
	if (S_ISCHR(m))
		return "a character device";
	if (S_ISBLK(m))
		return "a block device";
	return "not a file";
}

/* Reads the open regular file <fd> (<st> its fstat) and closes it. */
static int
read_fd(int fd, const struct stat *stp, const char *path, size_t max,
    uint8_t **out, size_t *out_len, struct mtls_error *err)
{
	const struct stat st = *stp;
	uint8_t *buf = NULL;
	size_t len = 0, cap;
	ssize_t n;

	cap = (st.st_size > 0 && (size_t)st.st_size <= max) ?
	    (size_t)st.st_size + 1 : 4096;
	if ((buf = malloc(cap)) == NULL) {
		error_set(err, MTLS_ERR_NOMEM, "%s: out of memory", path);
		goto err;
	}
	for (;;) {
		if (len + 1 >= cap) {
			uint8_t *nb;

			if (cap > max) {
				error_set(err, MTLS_ERR_IO,
				    "%s: larger than the %zu-byte limit", path,
				    max);
				goto err;
			}
			/* not realloc: the bytes read so far (a key, a PIN)
			 * must not stay behind in freed memory */
			if ((nb = malloc(cap * 2)) == NULL) {
				error_set(err, MTLS_ERR_NOMEM,
				    "%s: out of memory", path);
				goto err;
			}
			memcpy(nb, buf, len);
			OPENSSL_cleanse(buf, cap);
			free(buf);
			buf = nb;
			cap *= 2;
		}
		n = read(fd, buf + len, cap - len - 1);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			error_set_errno(err, MTLS_ERR_IO, "%s: cannot read",
			    path);
			goto err;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > max) {
			error_set(err, MTLS_ERR_IO,
			    "%s: larger than the %zu-byte limit", path, max);
			goto err;
		}
	}
	close(fd);
	buf[len] = '\0';
	*out = buf;
	*out_len = len;
	return 0;
 err:
	if (buf != NULL) {
		OPENSSL_cleanse(buf, cap);
		free(buf);
	}
	close(fd);
	return -1;
}

int
fs_read(const char *path, size_t max, uint8_t **out, size_t *out_len,
    struct mtls_error *err)
{
	struct stat st;
	int fd;

	*out = NULL;
	*out_len = 0;
	/* O_NONBLOCK: opening a FIFO for reading waits for a writer, forever
	 * (issue 18); a symlink to a regular file is fine, so no O_NOFOLLOW.
	 * On a regular file O_NONBLOCK changes nothing. */
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd == -1)
		return error_set_errno(err, MTLS_ERR_IO, "%s: cannot open", path);
	if (fstat(fd, &st) == -1) {
		error_set_errno(err, MTLS_ERR_IO, "%s: cannot stat", path);
		close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode)) {
		error_set(err, MTLS_ERR_IO, "%s: not a regular file (%s); give "
		    "the path of a file (or of a symlink to one)", path,
		    file_kind(st.st_mode));
		close(fd);
		return -1;
	}
	return read_fd(fd, &st, path, max, out, out_len, err);
}

/*
 * One open, then every check on that descriptor, then the read through it:
 * checking the path and reading it again lets whoever can rename in its
 * folder swap the file in between (a PIN or password of their choosing).
 * O_NOFOLLOW: a symlink's target is someone else's choice too.
 */
int
fs_read_private(const char *path, size_t max, const char *label,
    int no_read, uint8_t **out, size_t *out_len, struct stat *seen,
    struct mtls_error *err)
{
	struct stat st;
	int fd;

	*out = NULL;
	*out_len = 0;
	fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOFOLLOW);
	if (fd == -1 && errno == ELOOP)
		return error_set_errno(err, MTLS_ERR_ARG, "%s%s is a symlink: "
		    "give the path of the file itself", label, path);
	if (fd == -1)
		return error_set_errno(err, MTLS_ERR_IO, "%s%s", label, path);
	if (fstat(fd, &st) == -1) {
		error_set_errno(err, MTLS_ERR_IO, "%s%s: cannot stat", label,
		    path);
		goto err;
	}
	if (!S_ISREG(st.st_mode)) {
		error_set(err, MTLS_ERR_ARG, "%s%s: not a regular file (%s); "
		    "give the path of a file", label, path,
		    file_kind(st.st_mode));
		goto err;
	}
	if (st.st_uid != geteuid()) {
		error_set(err, MTLS_ERR_ARG, "%s%s belongs to uid %u, not to "
		    "this user (uid %u): chown %u %s", label, path,
		    (unsigned)st.st_uid, (unsigned)geteuid(),
		    (unsigned)geteuid(), path);
		goto err;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		error_set(err, MTLS_ERR_ARG, "%s%s is writable by %s (mode "
		    "%03o): chmod go-w %s", label, path,
		    st.st_mode & S_IWOTH ? "others" : "its group",
		    (unsigned)(st.st_mode & 07777), path);
		goto err;
	}
	if (no_read && (st.st_mode & (S_IRGRP | S_IROTH))) {
		error_set(err, MTLS_ERR_ARG, "%s%s is readable by %s (mode "
		    "%03o): chmod 600 %s", label, path,
		    st.st_mode & S_IROTH ? "others" : "its group",
		    (unsigned)(st.st_mode & 07777), path);
		goto err;
	}
	if (seen != NULL)
		*seen = st;
	return read_fd(fd, &st, path, max, out, out_len, err);
 err:
	close(fd);
	return -1;
}

static void
dir_of(const char *path, char *dir, size_t len)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", path);
	snprintf(dir, len, "%s", dirname(tmp));
}

int
fs_fsync_dir(const char *dir, struct mtls_error *err)
{
	int fd;

	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd == -1)
		return error_set_errno(err, MTLS_ERR_IO, "%s: cannot open",
		    dir);
	if (fsync(fd) == -1 && errno != EINVAL) {
		close(fd);
		return error_set_errno(err, MTLS_ERR_IO, "%s: cannot fsync",
		    dir);
	}
	close(fd);
	return 0;
}

int
fs_check_writable(const char *path, int overwrite, struct mtls_error *err)
{
	char dir[PATH_MAX];
	struct stat st;

	if (strlen(path) >= PATH_MAX - 32)
		return error_set(err, MTLS_ERR_ARG, "%s: path too long", path);
	if (lstat(path, &st) == 0) {
		if (S_ISDIR(st.st_mode))
			return error_set(err, MTLS_ERR_IO,
			    "%s: is a directory", path);
		if (!overwrite)
			return error_set(err, MTLS_ERR_IO,
			    "%s: already exists; not overwritten (use --force "
			    "to replace it)", path);
	}
	dir_of(path, dir, sizeof(dir));
	if (stat(dir, &st) == -1)
		return error_set_errno(err, MTLS_ERR_IO,
		    "%s: output folder %s is not usable", path, dir);
	if (!S_ISDIR(st.st_mode))
		return error_set(err, MTLS_ERR_IO,
		    "%s: %s is not a folder", path, dir);
	if (access(dir, W_OK | X_OK) == -1)
		return error_set_errno(err, MTLS_ERR_IO,
		    "%s: cannot write in %s", path, dir);
	return 0;
}

int
fs_check_private(const char *path, const char *label, const char *hint,
    struct mtls_error *err)
{
	struct stat st;

	if (stat(path, &st) != 0)
		return error_set_errno(err, MTLS_ERR_IO, "%s%s", label, path);
	if (st.st_uid != geteuid())
		return error_set(err, MTLS_ERR_ARG, "%s%s belongs to uid %u, not "
		    "to this user (uid %u): chown %u %s%s", label, path,
		    (unsigned)st.st_uid, (unsigned)geteuid(),
		    (unsigned)geteuid(), path, hint);
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return error_set(err, MTLS_ERR_ARG, "%s%s is writable by %s "
		    "(mode %03o): chmod go-w %s%s", label, path,
		    st.st_mode & S_IWOTH ? "others" : "its group",
		    (unsigned)(st.st_mode & 07777), path, hint);
	return 0;
}

int
fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode,
    int overwrite, struct mtls_error *err)
{
	char tmp[PATH_MAX], dir[PATH_MAX];
	unsigned char rnd[6];
	const uint8_t *p = data;
	size_t off = 0;
	ssize_t n;
	int fd, r;

	if (fs_check_writable(path, overwrite, err) != 0)
		return -1;
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "%s: no randomness",
		    path);
	snprintf(tmp, sizeof(tmp), "%s.tmp-%02x%02x%02x%02x%02x%02x", path,
	    rnd[0], rnd[1], rnd[2], rnd[3], rnd[4], rnd[5]);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
	    mode);
	if (fd == -1)
		return error_set_errno(err, MTLS_ERR_IO, "%s: cannot create",
		    tmp);
	/* umask may have narrowed it; a key must be exactly 0600. */
	if (fchmod(fd, mode) == -1) {
		error_set_errno(err, MTLS_ERR_IO, "%s: cannot chmod", tmp);
		goto err;
	}
	while (off < len) {
		n = write(fd, p + off, len - off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			error_set_errno(err, MTLS_ERR_IO, "%s: cannot write",
			    path);
			goto err;
		}
		off += (size_t)n;
	}
	if (fsync(fd) == -1) {
		error_set_errno(err, MTLS_ERR_IO, "%s: cannot fsync", path);
		goto err;
	}
	if (close(fd) == -1) {
		fd = -1;
		error_set_errno(err, MTLS_ERR_IO, "%s: cannot close", path);
		goto err;
	}
	fd = -1;
	if (overwrite)
		r = rename(tmp, path);
	else
		r = renameat2(AT_FDCWD, tmp, AT_FDCWD, path, RENAME_NOREPLACE);
	if (r == -1) {
		if (errno == EEXIST)
			error_set(err, MTLS_ERR_IO,
			    "%s: already exists; not overwritten (use --force "
			    "to replace it)", path);
		else
			error_set_errno(err, MTLS_ERR_IO,
			    "%s: cannot rename into place", path);
		goto err;
	}
	dir_of(path, dir, sizeof(dir));
	return fs_fsync_dir(dir, err);
 err:
	if (fd != -1)
		close(fd);
	unlink(tmp);
	return -1;
}
