/*
 * LD_PRELOAD shim: a full disk under one folder, switched by a file. While
 * the file $ENOSPC_FLAG exists, write(), pwrite(), pwrite64(), fsync() and
 * fdatasync() on a regular file whose path starts with $ENOSPC_DIR/ fail
 * with ENOSPC (what ext4 and tmpfs answer when full); everything else
 * (sockets, logs, other folders) is untouched. No mount needed.
 * Built by the test into its own directory: cc -shared -fPIC -o enospc.so
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static int
full(int fd)
{
	const char *flag = getenv("ENOSPC_FLAG"), *dir = getenv("ENOSPC_DIR");
	char link[64], path[PATH_MAX];
	struct stat st;
	size_t dl;
	ssize_t n;
	int saved = errno;

	if (flag == NULL || dir == NULL || access(flag, F_OK) != 0 ||
	    fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		errno = saved;
		return 0;
	}
	snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
	n = readlink(link, path, sizeof(path) - 1);
	errno = saved;
	if (n <= 0)
		return 0;
	path[n] = '\0';
	dl = strlen(dir);
	return strncmp(path, dir, dl) == 0 && path[dl] == '/';
}

#define REAL(name) \
	static __typeof__(&name) real; \
	if (real == NULL) \
		real = (__typeof__(&name))dlsym(RTLD_NEXT, #name)

ssize_t
write(int fd, const void *buf, size_t n)
{
	REAL(write);
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, n);
}

ssize_t
pwrite(int fd, const void *buf, size_t n, off_t off)
{
	REAL(pwrite);
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, n, off);
}

ssize_t
pwrite64(int fd, const void *buf, size_t n, off64_t off)
{
	REAL(pwrite64);
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd, buf, n, off);
}

int
fsync(int fd)
{
	REAL(fsync);
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd);
}

int
fdatasync(int fd)
{
	REAL(fdatasync);
	if (full(fd)) {
		errno = ENOSPC;
		return -1;
	}
	return real(fd);
}
