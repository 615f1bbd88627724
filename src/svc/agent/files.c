/*
 * The agent's files: --out-dir (ours alone), the certificate already
 * there, and the k8s layout's atomic swap.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "agent/agent_local.h"

/*
 * --layout k8s: the file names of a kubernetes.io/tls Secret, swapped in
 * as the kubelet does for a mounted Secret: the files go into a new
 * out-dir/..XXXXXX, the symlink out-dir/..data is replaced by rename to
 * point at it, and out-dir/tls.crt, tls.key and ca.crt are symlinks into
 * ..data made once. A reader sees either every old file or every new one,
 * never a new certificate with the old key. A name not in <f> keeps its
 * current bytes (unless <drop_tls>: tls.crt and tls.key then leave). The
 * previous directory is removed after the swap.
 */
int
files_k8s_swap(struct agent *a, const struct kfile *f, size_t n, int drop_tls,
    struct mtls_error *err)
{
	static const char *names[] = { "ca.crt", "tls.crt", "tls.key" };
	const char *out = a->o->out_dir;
	char dir[4200], data[4200], tmp[4200], old[256], p[4400], q[4400];
	const char *base;
	struct stat st;
	ssize_t ol;
	size_t i, j;
	int rv = -1;

	if ((size_t)snprintf(dir, sizeof(dir), "%s/..XXXXXX", out) >=
	    sizeof(dir) || mkdtemp(dir) == NULL)
		return error_set_errno(err, MTLS_ERR_IO, "%s: cannot make a "
		    "new data directory", out);
	base = strrchr(dir, '/') + 1;
	snprintf(data, sizeof(data), "%s/..data", out);
	snprintf(tmp, sizeof(tmp), "%s/..data_tmp", out);
	ol = readlink(data, old, sizeof(old) - 1);
	old[ol > 0 ? ol : 0] = '\0';
	/* only a name we make (..XXXXXX in out-dir) is ever removed */
	if (strncmp(old, "..", 2) != 0 || strchr(old, '/') != NULL ||
	    strcmp(old, "..data") == 0)
		old[0] = '\0';
	for (i = 0; i < 3; i++) {
		int r = 0;

		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		for (j = 0; j < n && strcmp(f[j].name, names[i]) != 0; j++)
			;
		if (j < n && f[j].key != NULL)
			r = key_write(p, f[j].key, NULL, 0, err);
		else if (j < n)
			r = fs_write_atomic(p, f[j].data, f[j].len, 0644, 0,
			    err);
		else if (old[0] != '\0' && !(drop_tls && i > 0)) {
			uint8_t *buf = NULL;
			size_t len = 0;

			snprintf(q, sizeof(q), "%s/%s/%s", out, old, names[i]);
			if (stat(q, &st) != 0)
				continue;
			if ((r = fs_read(q, MTLS_MAX_FILE, &buf, &len,
			    err)) == 0)
				r = fs_write_atomic(p, buf, len, i == 2 ? 0600 :
				    0644, 0, err);
			if (buf != NULL)
				OPENSSL_cleanse(buf, len);
			free(buf);
		}
		if (r != 0)
			goto fail;
	}
	(void)unlink(tmp);
	if (symlink(base, tmp) != 0 || rename(tmp, data) != 0) {
		error_set_errno(err, MTLS_ERR_IO, "%s: cannot swap ..data", out);
		goto fail;
	}
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", out, names[i]);
		snprintf(q, sizeof(q), "..data/%s", names[i]);
		if (lstat(p, &st) == 0) {
			char t[64];
			ssize_t tl = readlink(p, t, sizeof(t) - 1);

			if (tl > 0 && (t[tl] = '\0', strcmp(t, q) == 0))
				continue;
			if (!S_ISLNK(st.st_mode) && !S_ISREG(st.st_mode)) {
				error_set(err, MTLS_ERR_IO, "%s is in the way of "
				    "the k8s layout: remove it", p);
				goto done;
			}
		}
		/* a regular file from the flat layout or a stale link is
		 * replaced by the link, atomically */
		(void)unlink(tmp);
		if (symlink(q, tmp) != 0 || rename(tmp, p) != 0) {
			error_set_errno(err, MTLS_ERR_IO, "%s: cannot link it",
			    p);
			goto done;
		}
	}
	rv = 0;
 done:
	if (fs_fsync_dir(out, err) != 0)
		rv = -1;
	if (old[0] != '\0') {
		for (i = 0; i < 3; i++) {
			snprintf(p, sizeof(p), "%s/%s/%s", out, old, names[i]);
			(void)unlink(p);
		}
		snprintf(p, sizeof(p), "%s/%s", out, old);
		(void)rmdir(p);
	}
	return rv;
 fail:
	for (i = 0; i < 3; i++) {
		snprintf(p, sizeof(p), "%s/%s", dir, names[i]);
		(void)unlink(p);
	}
	(void)rmdir(dir);
	return -1;
}

/* <cert> and <key> readable and the certificate not expired: sets
 * not_after and serial. */
int
files_load_current(struct agent *a, const char *cert, const char *key)
{
	STACK_OF(X509) *chain = NULL;
	struct mtls_error e;
	int ok;

	if (access(cert, R_OK) != 0 ||
	    (!keystore_is_uri(key) && access(key, R_OK) != 0) ||
	    certs_load(cert, &chain, &e) != 0)
		return -1;
	a->not_after = asn1_time_unix(X509_get0_notAfter(sk_X509_value(chain,
	    0)));
	serial_hex(X509_get0_serialNumber(sk_X509_value(chain, 0)), a->serial,
	    sizeof(a->serial));
	sk_X509_pop_free(chain, X509_free);
	ok = a->not_after > (int64_t)time(NULL);
	return ok ? 0 : -1;
}

/*
 * --out-dir holds the key and the roots a proxy trusts: it must be a
 * directory of this user that nobody else can write (else another user
 * could swap bundle.pem or svid.pem under us). Created 0700 if missing.
 * The files inside are not checked: only this user (or root) can have
 * put them there, and every write replaces a file by rename with its own
 * mode.
 */
int
files_check_out_dir(const char *dir, struct mtls_error *err)
{
	struct stat st;

	if (mkdir(dir, 0700) != 0 && errno != EEXIST)
		return error_set_errno(err, MTLS_ERR_IO, "--out-dir %s", dir);
	if (stat(dir, &st) != 0)
		return error_set_errno(err, MTLS_ERR_IO, "--out-dir %s", dir);
	if (!S_ISDIR(st.st_mode))
		return error_set(err, MTLS_ERR_ARG, "--out-dir %s is not a "
		    "directory", dir);
	return fs_check_private(dir, "--out-dir ", ", or give a new path (it "
	    "is created 0700)", err);
}
