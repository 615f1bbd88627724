/*
 * Where a private key lives: a file (key.c parses it), or a PKCS#11 token
 * named by an RFC 7512 "pkcs11:" URI. The one place that knows about
 * tokens: a pkcs11 provider can replace libp11 here and nowhere else.
 *
 * libp11's PKCS11_* API, not its ENGINE: the URI is parsed once, here,
 * strictly, and libp11 gets structured values (module, token label, PIN,
 * key label/id). The ENGINE would parse the URI again with its own, more
 * lenient rules (pin-value accepted, unknown attributes ignored), take the
 * PIN through a control string and pull in OpenSSL's deprecated ENGINE
 * API; the PKCS11_* calls we need are six.
 *
 * A token's key stays in the token: the EVP_PKEY that libp11 returns signs
 * through the module. The module context, its slots and the login live as
 * long as the process (the key refers to them), one per module path.
 */
#include <dlfcn.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <libp11.h>
#include <p11-kit-1/p11-kit/pkcs11.h>	/* C_GenerateKeyPair: CK_* only */

#include "internal.h"

#define P11_DEFAULT_MODULE	"/usr/lib/softhsm/libsofthsm2.so"
#define CKR_PIN_INCORRECT_	0xa0UL	/* PKCS#11 v2.40 §3.6 values */
#define CKR_PIN_INVALID_	0xa1UL
#define CKR_PIN_LEN_RANGE_	0xa2UL
#define CKR_PIN_EXPIRED_	0xa3UL
#define CKR_PIN_LOCKED_		0xa4UL

int
keystore_is_uri(const char *s)
{
	return s != NULL && strncasecmp(s, "pkcs11:", 7) == 0;
}

/* RFC 7512 §2.3: unreserved, and the reserved characters allowed as they
 * are in a path value (pk11-path-res) or a query value (pk11-query-res). */
static int
vchar(unsigned char c, int query)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || strchr("-._~", c) != NULL)
		return 1;
	if (c == '\0')
		return 0;
	if (strchr(":[]@!$'()*+,=", c) != NULL)
		return 1;
	return query ? strchr("/?|;", c) != NULL : c == '&';
}

/* Percent-decodes s[0..n) into out (cap bytes, NUL-terminated); *outlen is
 * the decoded length. A NUL byte is allowed only when <binary>. */
static int
pdecode(const char *s, size_t n, int query, int binary, const char *attr,
    uint8_t *out, size_t cap, size_t *outlen, struct mtls_error *err)
{
	size_t i, o = 0;
	int hi, lo;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (o + 1 >= cap)
			return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: %s "
			    "is longer than %zu bytes", attr, cap - 1);
		if (c == '%') {
			if (i + 2 >= n ||
			    (hi = OPENSSL_hexchar2int((unsigned char)s[i + 1])) < 0 ||
			    (lo = OPENSSL_hexchar2int((unsigned char)s[i + 2])) < 0)
				return error_set(err, MTLS_ERR_PARSE,
				    "pkcs11 URI: %s: '%%' must be followed by "
				    "two hex digits", attr);
			c = (unsigned char)(hi << 4 | lo);
			if (c == 0 && !binary)
				return error_set(err, MTLS_ERR_PARSE,
				    "pkcs11 URI: %s holds a NUL byte (%%00)",
				    attr);
			i += 2;
		} else if (!vchar(c, query))
			return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: %s: "
			    "byte 0x%02x must be percent-encoded (RFC 7512)",
			    attr, c);
		out[o++] = c;
	}
	out[o] = '\0';
	*outlen = o;
	return 0;
}

static int
set_once(unsigned *seen, unsigned bit, const char *attr,
    struct mtls_error *err)
{
	if (*seen & bit)
		return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: %s appears "
		    "twice", attr);
	*seen |= bit;
	return 0;
}

static int
path_attr(struct p11uri *u, const char *name, size_t nlen, const char *v,
    size_t vlen, unsigned *seen, struct mtls_error *err)
{
	char type[16];
	size_t len;

	if (nlen == 5 && memcmp(name, "token", 5) == 0)
		return set_once(seen, 1, "token", err) != 0 ? -1 :
		    pdecode(v, vlen, 0, 0, "token", (uint8_t *)u->token,
		    sizeof(u->token), &len, err);
	if (nlen == 6 && memcmp(name, "object", 6) == 0)
		return set_once(seen, 2, "object", err) != 0 ? -1 :
		    pdecode(v, vlen, 0, 0, "object", (uint8_t *)u->object,
		    sizeof(u->object), &len, err);
	if (nlen == 2 && memcmp(name, "id", 2) == 0) {
		return set_once(seen, 4, "id", err) != 0 ? -1 :
		    pdecode(v, vlen, 0, 1, "id", u->id, sizeof(u->id),
		    &u->id_len, err);
	}
	if (nlen == 4 && memcmp(name, "type", 4) == 0) {
		if (set_once(seen, 8, "type", err) != 0 ||
		    pdecode(v, vlen, 0, 0, "type", (uint8_t *)type,
		    sizeof(type), &len, err) != 0)
			return -1;
		if (strcmp(type, "private") != 0)
			return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: "
			    "type=%s: a key is read from a private key object: "
			    "use type=private or leave type out",
			    strcmp(type, "public") == 0 ||
			    strcmp(type, "cert") == 0 ||
			    strcmp(type, "secret-key") == 0 ||
			    strcmp(type, "data") == 0 ? type : "(other)");
		return 0;
	}
	return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: path attribute "
	    "'%.*s' is not supported (token, object, id, type)",
	    (int)(nlen > 32 ? 32 : nlen), name);
}

static int
query_attr(struct p11uri *u, const char *name, size_t nlen, const char *v,
    size_t vlen, unsigned *seen, struct mtls_error *err)
{
	char buf[PATH_MAX + 8];
	const char *p;
	size_t len;

	if (nlen == 9 && memcmp(name, "pin-value", 9) == 0)
		return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: pin-value is "
		    "refused: a PIN in a URI is on command lines and in "
		    "process lists; put it in a file (mode 0600) and use "
		    "?pin-source=file:PATH");
	if (nlen == 10 && memcmp(name, "pin-source", 10) == 0) {
		if (set_once(seen, 16, "pin-source", err) != 0 ||
		    pdecode(v, vlen, 1, 0, "pin-source", (uint8_t *)buf,
		    sizeof(buf), &len, err) != 0)
			return -1;
		if (strncmp(buf, "file:", 5) != 0)
			return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: "
			    "pin-source must be file:PATH (a file holding the "
			    "PIN on its first line)");
		p = buf + 5;
		if (strncmp(p, "//", 2) == 0) {	/* file:///abs, no host */
			if (p[2] != '/')
				return error_set(err, MTLS_ERR_ARG, "pkcs11 "
				    "URI: pin-source: file://HOST/ is not a "
				    "local file: use file:/PATH");
			p += 2;
		}
		if (*p == '\0' || strlen(p) >= sizeof(u->pin_file))
			return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: "
			    "pin-source: the file path is empty or too long");
		memcpy(u->pin_file, p, strlen(p) + 1);
		return 0;
	}
	if (nlen == 11 && memcmp(name, "module-path", 11) == 0) {
		if (set_once(seen, 32, "module-path", err) != 0 ||
		    pdecode(v, vlen, 1, 0, "module-path",
		    (uint8_t *)u->module, sizeof(u->module), &len, err) != 0)
			return -1;
		if (u->module[0] != '/')
			return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: "
			    "module-path must be an absolute path to the "
			    "module's .so");
		return 0;
	}
	return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: query attribute "
	    "'%.*s' is not supported (pin-source, module-path)",
	    (int)(nlen > 32 ? 32 : nlen), name);
}

/* Splits s[0..n) at <sep> into name=value attributes and hands each to
 * <fn>. */
static int
attrs(struct p11uri *u, const char *s, size_t n, char sep, int query,
    unsigned *seen, struct mtls_error *err)
{
	const char *end = s + n, *a, *e, *eq;

	for (a = s; a < end; a = e + 1) {
		if ((e = memchr(a, sep, (size_t)(end - a))) == NULL)
			e = end;
		if (e == a)
			return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: an "
			    "empty attribute (two '%c' in a row, or one at an "
			    "end)", sep);
		if ((eq = memchr(a, '=', (size_t)(e - a))) == NULL || eq == a)
			return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: "
			    "attribute without name=value");
		if (eq + 1 == e)	/* token= would match no label, or all */
			return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: "
			    "'%.*s' has an empty value", (int)(eq - a > 32 ? 32 :
			    eq - a), a);
		if ((query ? query_attr : path_attr)(u, a, (size_t)(eq - a),
		    eq + 1, (size_t)(e - eq - 1), seen, err) != 0)
			return -1;
		if (e == end)
			break;
		if (e + 1 == end)
			return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: an "
			    "empty attribute (two '%c' in a row, or one at an "
			    "end)", sep);
	}
	return 0;
}

int
p11uri_parse(const char *s, size_t n, struct p11uri *u,
    struct mtls_error *err)
{
	const char *q;
	unsigned seen = 0;

	memset(u, 0, sizeof(*u));
	if (n > P11URI_MAX)
		return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: %zu bytes, "
		    "over the limit of %d", n, P11URI_MAX);
	if (n < 7 || strncasecmp(s, "pkcs11:", 7) != 0)
		return error_set(err, MTLS_ERR_PARSE, "not a pkcs11: URI");
	if (memchr(s, '\0', n) != NULL)
		return error_set(err, MTLS_ERR_PARSE, "pkcs11 URI: a NUL byte");
	s += 7;
	n -= 7;
	q = memchr(s, '?', n);
	if (attrs(u, s, q != NULL ? (size_t)(q - s) : n, ';', 0, &seen,
	    err) != 0)
		return -1;
	if (q != NULL && attrs(u, q + 1, n - (size_t)(q + 1 - s), '&', 1,
	    &seen, err) != 0)
		return -1;
	if (!(seen & 1))
		return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: name the token "
		    "(token=LABEL)");
	if (!(seen & (2 | 4)))
		return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: name the key "
		    "(object=LABEL or id=%%HEX)");
	if (!(seen & 16))
		return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: give the PIN "
		    "file: ?pin-source=file:PATH");
	return 0;
}

/* The URI as messages show it: up to the query (no PIN file path, no
 * module), escaped. */
static void
uri_shown(const char *uri, char *out, size_t cap)
{
	const char *q = strchr(uri, '?');

	esc_text(out, cap, uri, q != NULL ? (size_t)(q - uri) : strlen(uri),
	    160, 0);
}

/* The PIN file: this user's, not readable or writable by group or
 * others (it is a secret); its first line, cleansed after copying. Opened
 * once and judged on the descriptor it is read through (fs_read_private):
 * in a folder another user can write, the file checked is the file read.
 * <seen> gets its identity, for pin_seen. */
static int
pin_load(const char *path, struct mtls_secret *pin, struct stat *seen,
    struct mtls_error *err)
{
	return secret_load_private(pin, path, "pkcs11 PIN file ", seen, err);
}

/* A module .so runs in our process: root's or ours, and nobody else may
 * write it. Checked on the open file <fd>, which is then what is loaded
 * (module_get), so the file judged is the file that runs, whoever can
 * rename in its folder. */
static int
module_check(int fd, const char *path, struct mtls_error *err)
{
	struct stat st;

	if (fstat(fd, &st) != 0)
		return error_set_errno(err, MTLS_ERR_IO, "pkcs11 module %s "
		    "(set module-path in the URI or MTLS_PKCS11_MODULE)", path);
	if (!S_ISREG(st.st_mode))
		return error_set(err, MTLS_ERR_ARG, "pkcs11 module %s is not a "
		    "regular file", path);
	if ((st.st_uid != 0 && st.st_uid != geteuid()) ||
	    (st.st_mode & (S_IWGRP | S_IWOTH)))
		return error_set(err, MTLS_ERR_ARG, "pkcs11 module %s must "
		    "belong to root or this user and not be writable by group "
		    "or others (mode %03o)", path,
		    (unsigned)(st.st_mode & 07777));
	return 0;
}

/* The PIN file a token was logged in with, as it was then (its identity,
 * never its bytes): a reload that finds it changed checks the new PIN. */
struct pinseen {
	char		 token[33];
	char		 path[PATH_MAX];
	dev_t		 dev;
	ino_t		 ino;
	off_t		 size;
	struct timespec	 mtim, ctim;
	int		 refused;	/* its PIN was refused: not tried
					 * again until the file changes */
	struct pinseen	*next;
};

struct module {
	char		 path[PATH_MAX];
	char		 load[32];	/* /proc/self/fd/N: what is loaded */
	int		 fd;		/* the module's file, open for life */
	struct pinseen	*pins;
	CK_FUNCTION_LIST *fl;	/* the module's own list (keygen, undo) */
	PKCS11_CTX	*ctx;
	PKCS11_SLOT	*slots;
	unsigned	 nslots;
	struct module	*next;
};
static struct module *modules;	/* for the process's life */
static pthread_mutex_t modules_mu = PTHREAD_MUTEX_INITIALIZER;

static struct module *
module_get(const char *path, struct mtls_error *err)
{
	struct module *m;
	int fd;

	for (m = modules; m != NULL; m = m->next)
		if (strcmp(m->path, path) == 0)
			return m;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) == -1) {
		error_set_errno(err, MTLS_ERR_IO, "pkcs11 module %s (set "
		    "module-path in the URI or MTLS_PKCS11_MODULE)", path);
		return NULL;
	}
	if (module_check(fd, path, err) != 0) {
		close(fd);
		return NULL;
	}
	if ((m = calloc(1, sizeof(*m))) == NULL ||
	    (m->ctx = PKCS11_CTX_new()) == NULL) {
		free(m);
		close(fd);
		error_set(err, MTLS_ERR_NOMEM, "pkcs11: out of memory");
		return NULL;
	}
	m->fd = fd;
	snprintf(m->path, sizeof(m->path), "%s", path);
	snprintf(m->load, sizeof(m->load), "/proc/self/fd/%d", fd);
	if (PKCS11_CTX_load(m->ctx, m->load) != 0) {
		error_set_ossl(err, MTLS_ERR_IO, "pkcs11 module %s: cannot "
		    "load or initialize it", path);
		goto err;
	}
	if (PKCS11_enumerate_slots(m->ctx, &m->slots, &m->nslots) != 0) {
		error_set_ossl(err, MTLS_ERR_IO, "pkcs11 module %s: cannot "
		    "list its slots", path);
		PKCS11_CTX_unload(m->ctx);
		goto err;
	}
	m->next = modules;
	modules = m;
	return m;
 err:
	PKCS11_CTX_free(m->ctx);
	close(m->fd);
	free(m);
	return NULL;
}

static PKCS11_SLOT *
slot_find(struct module *m, const char *label)
{
	unsigned i;

	for (i = 0; i < m->nslots; i++)
		if (m->slots[i].token != NULL &&
		    m->slots[i].token->initialized &&
		    strcmp(m->slots[i].token->label, label) == 0)
			return &m->slots[i];
	return NULL;
}

static unsigned long
ckr_of_login_error(void)
{
	unsigned long e, r = 0;
	int lib = ERR_get_CKR_code();

	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_LIB(e) == lib)
			r = (unsigned long)ERR_GET_REASON(e);
	return r;
}

static int rw_session(struct module *, PKCS11_SLOT *, CK_SESSION_HANDLE *,
    const char *, struct mtls_error *);

/* <u>'s PIN file as its token's login (or the last check of that file)
 * saw it: 1 the same and accepted, 2 the same and refused, 0 changed or
 * never seen. <rec> 1 records <loaded> (the fstat of the file the PIN was
 * read from, never a second look by path) as accepted, 2 as refused. */
static int
pin_seen(struct module *m, const struct p11uri *u, int rec,
    const struct stat *loaded)
{
	struct pinseen *p;
	struct stat st;

	if (rec)
		st = *loaded;
	else if (lstat(u->pin_file, &st) != 0)
		return 0;
	for (p = m->pins; p != NULL; p = p->next)	/* per token and file */
		if (strcmp(p->token, u->token) == 0 &&
		    strcmp(p->path, u->pin_file) == 0)
			break;
	if (!rec)
		return (p != NULL && p->dev == st.st_dev && p->ino == st.st_ino &&
		    p->size == st.st_size &&
		    p->mtim.tv_sec == st.st_mtim.tv_sec &&
		    p->mtim.tv_nsec == st.st_mtim.tv_nsec &&
		    p->ctim.tv_sec == st.st_ctim.tv_sec &&
		    p->ctim.tv_nsec == st.st_ctim.tv_nsec) ?
		    1 + p->refused : 0;
	if (p == NULL) {
		if ((p = calloc(1, sizeof(*p))) == NULL)
			return 0;
		p->next = m->pins;
		m->pins = p;
	}
	snprintf(p->token, sizeof(p->token), "%s", u->token);
	snprintf(p->path, sizeof(p->path), "%s", u->pin_file);
	p->dev = st.st_dev;
	p->ino = st.st_ino;
	p->size = st.st_size;
	p->mtim = st.st_mtim;
	p->ctim = st.st_ctim;
	p->refused = rec == 2;
	return 1;
}

/*
 * The token is logged in, and the PIN file changed since (a reload after
 * the PIN was changed, or a wrong file): the new PIN is checked without
 * logging out, which would stop the key that is serving. PKCS#11 has no
 * "check this PIN" call; C_SetPIN from the PIN to itself checks it (a
 * wrong one: CKR_PIN_INCORRECT, counted like a failed login) and changes
 * nothing. A token that refuses that call for another reason (a policy)
 * leaves the PIN unchecked until the next login: 0 then too.
 */
static int
pin_recheck(struct module *m, PKCS11_SLOT *slot, const struct p11uri *u,
    const char *shown, struct mtls_secret *pin, const struct stat *loaded,
    unsigned long *ckr, struct mtls_error *err)
{
	CK_SESSION_HANDLE s;
	CK_RV rv;

	*ckr = CKR_OK;
	if (rw_session(m, slot, &s, shown, err) != 0)
		return -1;
	rv = m->fl->C_SetPIN(s, pin->p, pin->len, pin->p, pin->len);
	m->fl->C_CloseSession(s);
	*ckr = rv;
	if (rv == CKR_PIN_INCORRECT || rv == CKR_PIN_INVALID ||
	    rv == CKR_PIN_LEN_RANGE || rv == CKR_PIN_LOCKED) {
		/* each try counts toward the token's lockout: this file is
		 * not tried again until it changes */
		(void)pin_seen(m, u, 2, loaded);
		return -1;
	}
	(void)pin_seen(m, u, 1, loaded);
	return 0;
}

static int
login(struct module *m, PKCS11_SLOT *slot, const struct p11uri *u,
    const char *shown, struct mtls_error *err)
{
	struct mtls_secret pin = { NULL, 0 };
	unsigned long ckr = CKR_OK;
	struct stat loaded;
	int in = 0, seen = 0, rv = -1;

	if (PKCS11_is_logged_in(slot, 0, &in) != 0)
		in = 0;
	if (in && (seen = pin_seen(m, u, 0, NULL)) == 1)
		return 0;
	if (in && seen == 2)
		return error_set(err, MTLS_ERR_ARG, "pkcs11: token %s: PIN "
		    "refused (CKR_PIN_INCORRECT) - check pin-source file %s "
		    "(refused before; not tried again until it changes; the "
		    "key loaded before keeps serving)", u->token, u->pin_file);
	if (pin_load(u->pin_file, &pin, &loaded, err) != 0)
		return -1;
	if (in) {
		if (pin_recheck(m, slot, u, shown, &pin, &loaded, &ckr,
		    err) == 0) {
			rv = 0;
			goto out;
		}
		if (ckr == CKR_OK)	/* no session: err says why */
			goto out;
		if (ckr != CKR_PIN_LOCKED) {
			error_set(err, MTLS_ERR_ARG, "pkcs11: token %s: PIN "
			    "refused (CKR_PIN_INCORRECT) - check pin-source "
			    "file %s (it changed since the login; the key "
			    "loaded before keeps serving)", u->token,
			    u->pin_file);
			goto out;
		}
	} else if (PKCS11_login(slot, 0, (const char *)pin.p) == 0) {
		(void)pin_seen(m, u, 1, &loaded);
		rv = 0;
		goto out;
	} else
		ckr = ckr_of_login_error();
	if (ckr == CKR_PIN_INCORRECT_ || ckr == CKR_PIN_INVALID_ ||
	    ckr == CKR_PIN_LEN_RANGE_)
		error_set(err, MTLS_ERR_ARG, "pkcs11: token %s: PIN refused "
		    "(CKR_PIN_INCORRECT) - check pin-source file %s",
		    u->token, u->pin_file);
	else if (ckr == CKR_PIN_LOCKED_ || ckr == CKR_PIN_EXPIRED_)
		error_set(err, MTLS_ERR_ARG, "pkcs11: token %s: PIN %s "
		    "(CKR_PIN_%s): the security officer must reset it",
		    u->token, ckr == CKR_PIN_LOCKED_ ? "locked" : "expired",
		    ckr == CKR_PIN_LOCKED_ ? "LOCKED" : "EXPIRED");
	else
		error_set(err, MTLS_ERR_IO, "pkcs11: %s: login failed "
		    "(CKR 0x%lx)", shown, ckr);
 out:
	secret_clear(&pin);
	return rv;
}

/*
 * libp11 pairs a token's private key with a public key found by CKA_ID (or
 * a certificate): keys without distinct ids can be paired with another
 * key's public half, and a certificate or a root would then carry a public
 * key that does not verify what the token signs. One signature in the
 * token, verified in software with the public half, proves the pair.
 */
static int
pair_check(EVP_PKEY *k)
{
	unsigned char msg[32], sig[1024];
	size_t siglen = sizeof(sig);
	EVP_MD_CTX *c = EVP_MD_CTX_new();
	const EVP_MD *md = EVP_PKEY_get_base_id(k) == EVP_PKEY_ED25519 ?
	    NULL : EVP_sha256();
	int ok = 0;

	if (c != NULL && RAND_bytes(msg, sizeof(msg)) == 1 &&
	    EVP_DigestSignInit(c, NULL, md, NULL, k) == 1 &&
	    EVP_DigestSign(c, sig, &siglen, msg, sizeof(msg)) == 1) {
		EVP_MD_CTX_free(c);
		c = EVP_MD_CTX_new();
		ok = c != NULL &&
		    EVP_DigestVerifyInit(c, NULL, md, NULL, k) == 1 &&
		    EVP_DigestVerify(c, sig, siglen, msg, sizeof(msg)) == 1;
	}
	EVP_MD_CTX_free(c);
	return ok;
}

static const char *
module_of(const struct p11uri *u)
{
	const char *e = getenv("MTLS_PKCS11_MODULE");

	return u->module[0] != '\0' ? u->module :
	    e != NULL && e[0] != '\0' ? e : P11_DEFAULT_MODULE;
}

/* The URI's token, logged in (modules_mu held): <u> parsed, <shown> the
 * URI for messages. */
static int
open_slot(const char *uri, struct p11uri *u, char *shown, size_t cap,
    struct module **m, PKCS11_SLOT **slot, struct mtls_error *err)
{
	if (p11uri_parse(uri, strlen(uri), u, err) != 0)
		return -1;
	uri_shown(uri, shown, cap);
	if ((*m = module_get(module_of(u), err)) == NULL)
		return -1;
	if ((*slot = slot_find(*m, u->token)) == NULL)
		return error_set(err, MTLS_ERR_ARG, "pkcs11: %s: no initialized "
		    "token labelled '%s' in module %s", shown, u->token,
		    module_of(u));
	return login(*m, *slot, u, shown, err);
}

/* The one private key that matches <u> (object=, id=, and <id> when
 * given), or *k NULL when none does. */
static int
find_key(PKCS11_SLOT *slot, const struct p11uri *u, const uint8_t *id,
    size_t id_len, const char *shown, PKCS11_KEY **k, struct mtls_error *err)
{
	PKCS11_KEY *keys = NULL;
	unsigned i, n = 0;

	*k = NULL;
	if (id == NULL) {
		id = u->id;
		id_len = u->id_len;
	}
	if (PKCS11_enumerate_keys(slot->token, &keys, &n) != 0)
		return error_set_ossl(err, MTLS_ERR_IO, "pkcs11: %s: cannot "
		    "list the token's keys", shown);
	for (i = 0; i < n; i++) {
		if (u->object[0] != '\0' && (keys[i].label == NULL ||
		    strcmp(keys[i].label, u->object) != 0))
			continue;
		if (id_len > 0 && (keys[i].id_len != id_len ||
		    memcmp(keys[i].id, id, id_len) != 0))
			continue;
		if (*k != NULL) {
			*k = NULL;
			return error_set(err, MTLS_ERR_ARG, "pkcs11: %s: more "
			    "than one private key matches: add id= to the URI",
			    shown);
		}
		*k = &keys[i];
	}
	return 0;
}

/* The EVP_PKEY that signs with <k> in the token, its pair proven. */
static int
use_key(PKCS11_KEY *k, const char *shown, EVP_PKEY **out,
    struct mtls_error *err)
{
	if ((*out = PKCS11_get_private_key(k)) == NULL)
		return error_set_ossl(err, MTLS_ERR_CRYPTO, "pkcs11: %s: cannot "
		    "use the key (its public part is needed too)", shown);
	if (!pair_check(*out)) {
		EVP_PKEY_free(*out);
		*out = NULL;
		return error_set(err, MTLS_ERR_CRYPTO, "pkcs11: %s: what the "
		    "token signs with this key does not verify with the public "
		    "key paired with it (give each key pair its own CKA_ID: "
		    "pkcs11-tool --keypairgen --id HEX)", shown);
	}
	return 0;
}

static int
load_uri(const char *uri, EVP_PKEY **out, struct mtls_error *err)
{
	struct p11uri u;
	struct module *m;
	PKCS11_SLOT *slot;
	PKCS11_KEY *k = NULL;
	char shown[200];
	int rv = -1;

	*out = NULL;
	pthread_mutex_lock(&modules_mu);
	if (open_slot(uri, &u, shown, sizeof(shown), &m, &slot, err) != 0 ||
	    find_key(slot, &u, NULL, 0, shown, &k, err) != 0)
		goto err;
	if (k == NULL) {
		error_set(err, MTLS_ERR_ARG, "pkcs11: %s: no such private key "
		    "in token '%s' (check object=/id=; pkcs11-tool "
		    "--list-objects shows them)", shown, u.token);
		goto err;
	}
	rv = use_key(k, shown, out, err);
 err:
	pthread_mutex_unlock(&modules_mu);
	OPENSSL_cleanse(&u, sizeof(u));
	ERR_clear_error();
	return rv;
}

/*
 * Key generation. libp11 0.4.12 generates RSA keys only (and through a
 * deprecated call), so the pair is made with C_GenerateKeyPair from the
 * module's own function list: dlopen() of the module libp11 loaded returns
 * the same library, already initialized by libp11 (its C_Initialize then
 * says CKR_CRYPTOKI_ALREADY_INITIALIZED), and a session of ours opened on
 * the token shares libp11's login (a login is per application, PKCS#11
 * §5.6). libp11 then loads the new key like any other.
 */
static int
function_list(struct module *m, struct mtls_error *err)
{
	CK_C_GetFunctionList get;
	CK_RV rv;
	void *h;

	if (m->fl != NULL)
		return 0;
	if ((h = dlopen(m->load, RTLD_NOW | RTLD_LOCAL)) == NULL ||
	    (get = (CK_C_GetFunctionList)(void (*)(void))dlsym(h,
	    "C_GetFunctionList")) == NULL || get(&m->fl) != CKR_OK ||
	    m->fl == NULL) {
		m->fl = NULL;
		return error_set(err, MTLS_ERR_IO, "pkcs11 module %s: no "
		    "C_GetFunctionList", m->path);
	}
	/* h stays open: the module is libp11's for the process's life too */
	rv = m->fl->C_Initialize(NULL);
	if (rv != CKR_OK && rv != CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		m->fl = NULL;
		return error_set(err, MTLS_ERR_IO, "pkcs11 module %s: "
		    "C_Initialize: CKR 0x%lx", m->path, (unsigned long)rv);
	}
	return 0;
}

static int
rw_session(struct module *m, PKCS11_SLOT *slot, CK_SESSION_HANDLE *s,
    const char *shown, struct mtls_error *err)
{
	CK_RV rv;

	if (function_list(m, err) != 0)
		return -1;
	rv = m->fl->C_OpenSession(PKCS11_get_slotid_from_slot(slot),
	    CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, s);
	if (rv != CKR_OK)
		return error_set(err, MTLS_ERR_IO, "pkcs11: %s: cannot open a "
		    "read-write session (CKR 0x%lx)", shown, (unsigned long)rv);
	return 0;
}

/* Destroys the token objects (any class) labelled <label> with CKA_ID
 * <id>: what generate_pair made. Returns how many are left (0: all gone). */
static int
destroy_pair(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s, const char *label,
    const uint8_t *id, size_t id_len)
{
	CK_ATTRIBUTE t[] = {
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, id_len },
	};
	CK_OBJECT_HANDLE o[8];
	CK_ULONG i, n = 0;
	int left = 0;

	if (fl->C_FindObjectsInit(s, t, 2) != CKR_OK)
		return 1;
	if (fl->C_FindObjects(s, o, 8, &n) != CKR_OK)
		n = 0, left = 1;
	fl->C_FindObjectsFinal(s);
	for (i = 0; i < n; i++)
		if (fl->C_DestroyObject(s, o[i]) != CKR_OK)
			left++;
	return left;
}

static int
generate_pair(CK_FUNCTION_LIST *fl, CK_SESSION_HANDLE s, int type,
    const char *label, const uint8_t *id, size_t id_len, const char *shown,
    struct mtls_error *err)
{
	static const CK_BYTE p256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
	    0x3d, 0x03, 0x01, 0x07 };	/* OID 1.2.840.10045.3.1.7 */
	static const CK_BYTE p384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00,
	    0x22 };			/* OID 1.3.132.0.34 */
	static const CK_BYTE e65537[] = { 0x01, 0x00, 0x01 };
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_OBJECT_CLASS pubc = CKO_PUBLIC_KEY, privc = CKO_PRIVATE_KEY;
	CK_KEY_TYPE kt;
	CK_ULONG bits = type == KEY_RSA_3072 ? 3072 : 2048;
	CK_MECHANISM mech = { CKM_EC_KEY_PAIR_GEN, NULL, 0 };
	CK_OBJECT_HANDLE pub, priv;
	CK_ATTRIBUTE pt[10] = {
		{ CKA_CLASS, &pubc, sizeof(pubc) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_VERIFY, &yes, sizeof(yes) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, id_len },
		{ CKA_ENCRYPT, &no, sizeof(no) },
		{ CKA_WRAP, &no, sizeof(no) },
	};
	CK_ATTRIBUTE kt_[] = {
		{ CKA_CLASS, &privc, sizeof(privc) },
		{ CKA_KEY_TYPE, &kt, sizeof(kt) },
		{ CKA_TOKEN, &yes, sizeof(yes) },
		{ CKA_PRIVATE, &yes, sizeof(yes) },
		{ CKA_SENSITIVE, &yes, sizeof(yes) },
		{ CKA_EXTRACTABLE, &no, sizeof(no) },
		{ CKA_SIGN, &yes, sizeof(yes) },
		{ CKA_DECRYPT, &no, sizeof(no) },	/* it signs, only */
		{ CKA_UNWRAP, &no, sizeof(no) },
		{ CKA_DERIVE, &no, sizeof(no) },
		{ CKA_LABEL, (void *)label, strlen(label) },
		{ CKA_ID, (void *)id, id_len },
	};
	CK_ULONG np = 8;
	CK_RV rv;

	switch (type) {
	case KEY_EC_P256:
	case KEY_EC_P384:
		kt = CKK_EC;
		pt[np].type = CKA_EC_PARAMS;
		pt[np].pValue = (void *)(type == KEY_EC_P256 ? p256 : p384);
		pt[np++].ulValueLen = type == KEY_EC_P256 ? sizeof(p256) :
		    sizeof(p384);
		break;
	case KEY_RSA_2048:
	case KEY_RSA_3072:
		kt = CKK_RSA;
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		pt[np].type = CKA_MODULUS_BITS;
		pt[np].pValue = &bits;
		pt[np++].ulValueLen = sizeof(bits);
		pt[np].type = CKA_PUBLIC_EXPONENT;
		pt[np].pValue = (void *)e65537;
		pt[np++].ulValueLen = sizeof(e65537);
		break;
	default:
		return error_set(err, MTLS_ERR_ARG, "pkcs11: %s: %s keys "
		    "cannot be made in a token (libp11 signs with EC and RSA "
		    "keys): use --key-type ec-p256, ec-p384, rsa-2048 or "
		    "rsa-3072", shown, key_type_name(type));
	}
	rv = fl->C_GenerateKeyPair(s, &mech, pt, np, kt_,
	    sizeof(kt_) / sizeof(kt_[0]), &pub, &priv);
	if (rv != CKR_OK)
		return error_set(err, MTLS_ERR_IO, "pkcs11: %s: the token did "
		    "not generate a %s key pair (C_GenerateKeyPair: CKR 0x%lx)",
		    shown, key_type_name(type), (unsigned long)rv);
	return 0;
}

/* The end of keystore_generate and keystore_undo: the session closed,
 * the lock released, the parsed URI wiped. */
static int
p11_done(struct module *m, CK_SESSION_HANDLE s, struct p11uri *u, int rv)
{
	if (s != CK_INVALID_HANDLE)
		m->fl->C_CloseSession(s);
	pthread_mutex_unlock(&modules_mu);
	OPENSSL_cleanse(u, sizeof(*u));
	ERR_clear_error();
	return rv;
}

int
keystore_generate(const char *uri, int type, int adopt, EVP_PKEY **out,
    struct keystore_made *made, struct mtls_error *err)
{
	struct p11uri u;
	struct module *m = NULL;
	PKCS11_SLOT *slot;
	PKCS11_KEY *k = NULL;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	char shown[200];
	int rv = -1;

	*out = NULL;
	memset(made, 0, sizeof(*made));
	pthread_mutex_lock(&modules_mu);
	if (open_slot(uri, &u, shown, sizeof(shown), &m, &slot, err) != 0 ||
	    find_key(slot, &u, NULL, 0, shown, &k, err) != 0)
		goto out;
	if (k != NULL && adopt) {
		if (k->id_len <= sizeof(made->id)) {	/* its name, made 0 */
			memcpy(made->id, k->id, k->id_len);
			made->id_len = k->id_len;
		}
		rv = use_key(k, shown, out, err);
		goto out;
	}
	if (k != NULL) {
		error_set(err, MTLS_ERR_ARG, "pkcs11: %s: the token already "
		    "holds this private key; a new key is not made over it: "
		    "name another object=, or pass --existing-key to use "
		    "that key", shown);
		goto out;
	}
	if (u.object[0] == '\0') {
		error_set(err, MTLS_ERR_ARG, "pkcs11: %s: a key made in the "
		    "token needs a label: add object=NAME to the URI", shown);
		goto out;
	}
	if (u.id_len > 0) {	/* the URI's id: its loads match it */
		memcpy(made->id, u.id, u.id_len);
		made->id_len = u.id_len;
	} else {		/* a fresh id: libp11 pairs keys by CKA_ID */
		made->id_len = 16;
		if (RAND_bytes(made->id, (int)made->id_len) != 1) {
			error_set_ossl(err, MTLS_ERR_CRYPTO, "pkcs11: no "
			    "random bytes for the key's id");
			goto out;
		}
	}
	if (rw_session(m, slot, &s, shown, err) != 0 ||
	    generate_pair(m->fl, s, type, u.object, made->id, made->id_len,
	    shown, err) != 0)
		goto out;
	snprintf(made->uri, sizeof(made->uri), "%s", uri);
	made->made = 1;
	if (find_key(slot, &u, made->id, made->id_len, shown, &k, err) != 0)
		goto undo;
	if (k == NULL) {
		error_set(err, MTLS_ERR_IO, "pkcs11: %s: the key made in the "
		    "token is not found by libp11", shown);
		goto undo;
	}
	if (use_key(k, shown, out, err) == 0) {
		rv = 0;
		goto out;
	}
 undo:
	if (destroy_pair(m->fl, s, u.object, made->id, made->id_len) == 0)
		made->made = 0;
 out:
	return p11_done(m, s, &u, rv);
}

int
keystore_undo(struct keystore_made *made, struct mtls_error *err)
{
	if (!made->made)
		return 0;
	if (keystore_destroy(made->uri, made->id, made->id_len, err) != 0)
		return -1;
	made->made = 0;
	return 0;
}

int
keystore_destroy(const char *uri, const uint8_t *id, size_t id_len,
    struct mtls_error *err)
{
	struct p11uri u;
	struct module *m = NULL;
	PKCS11_SLOT *slot;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	char shown[200];
	int rv = -1;

	pthread_mutex_lock(&modules_mu);
	if (open_slot(uri, &u, shown, sizeof(shown), &m, &slot, err) != 0 ||
	    rw_session(m, slot, &s, shown, err) != 0)
		goto out;
	if (u.object[0] == '\0' || id_len == 0) {
		error_set(err, MTLS_ERR_ARG, "pkcs11: %s: a key pair is deleted "
		    "by its label and CKA_ID, both", shown);
		goto out;
	}
	if (destroy_pair(m->fl, s, u.object, id, id_len) != 0) {
		error_set(err, MTLS_ERR_IO, "pkcs11: %s: the key pair made "
		    "for it is still in the token (delete it: pkcs11-tool "
		    "--delete-object --label '%s')", shown, u.object);
		goto out;
	}
	rv = 0;
 out:
	return p11_done(m, s, &u, rv);
}

/*
 * The private key labelled as <uri>'s object= (any CKA_ID: the URI's id=
 * is ignored) whose public key is <cert>'s: *out and its id, or *out NULL
 * when none is. The agent finds its current key this way after a crash
 * in a replacement, when two pairs share the label.
 */
int
keystore_find_cert(const char *uri, X509 *cert, EVP_PKEY **out, uint8_t *id,
    size_t *id_len, struct mtls_error *err)
{
	struct p11uri u;
	struct module *m;
	PKCS11_SLOT *slot;
	PKCS11_KEY *keys = NULL;
	EVP_PKEY *k;
	char shown[200];
	unsigned i, n = 0;
	int rv = -1;

	*out = NULL;
	*id_len = 0;
	pthread_mutex_lock(&modules_mu);
	if (open_slot(uri, &u, shown, sizeof(shown), &m, &slot, err) != 0)
		goto out;
	if (PKCS11_enumerate_keys(slot->token, &keys, &n) != 0) {
		error_set_ossl(err, MTLS_ERR_IO, "pkcs11: %s: cannot list the "
		    "token's keys", shown);
		goto out;
	}
	for (i = 0; i < n && *out == NULL; i++) {
		if (keys[i].label == NULL || strcmp(keys[i].label,
		    u.object) != 0 || keys[i].id_len > 128 ||
		    (k = PKCS11_get_private_key(&keys[i])) == NULL)
			continue;
		if (X509_check_private_key(cert, k) == 1 && pair_check(k)) {
			*out = k;
			memcpy(id, keys[i].id, keys[i].id_len);
			*id_len = keys[i].id_len;
		} else
			EVP_PKEY_free(k);
	}
	rv = 0;
 out:
	pthread_mutex_unlock(&modules_mu);
	OPENSSL_cleanse(&u, sizeof(u));
	ERR_clear_error();
	return rv;
}

/* <uri> naming exactly the key whose CKA_ID is <id>: its path with any
 * id= replaced by ours (percent-encoded), its query kept. */
int
keystore_uri_with_id(const char *uri, const uint8_t *id, size_t id_len,
    char *out, size_t cap, struct mtls_error *err)
{
	const char *q = strchr(uri, '?'), *end = q != NULL ? q :
	    uri + strlen(uri), *a = uri + 7, *e;
	size_t o = 0, i;
	int r;

	if (!keystore_is_uri(uri))
		return error_set(err, MTLS_ERR_ARG, "not a pkcs11: URI");
#define PUT(...) do {							\
	r = snprintf(out + o, cap - o, __VA_ARGS__);			\
	if (r < 0 || (size_t)r >= cap - o)				\
		return error_set(err, MTLS_ERR_ARG, "pkcs11 URI: too "	\
		    "long with its id");				\
	o += (size_t)r;							\
} while (0)
	PUT("pkcs11:");
	for (; a < end; a = e + 1) {
		if ((e = memchr(a, ';', (size_t)(end - a))) == NULL)
			e = end;
		if (e - a >= 3 && strncmp(a, "id=", 3) == 0)
			continue;
		PUT("%.*s;", (int)(e - a), a);
		if (e == end)
			break;
	}
	PUT("id=");
	for (i = 0; i < id_len; i++)
		PUT("%%%02x", id[i]);
	PUT("%s", q != NULL ? q : "");
#undef PUT
	return o > P11URI_MAX ? error_set(err, MTLS_ERR_ARG, "pkcs11 URI: "
	    "over %d bytes with its id", P11URI_MAX) : 0;
}

struct pinpath {
	char		*uri, *pin;
	struct pinpath	*next;
};
static struct pinpath *pinpaths;	/* for the process's life */

const char *
keystore_pin_file(const char *uri)
{
	struct pinpath *p;
	struct p11uri *u;
	struct mtls_error e;
	const char *r = NULL;

	if (!keystore_is_uri(uri))
		return NULL;
	pthread_mutex_lock(&modules_mu);
	for (p = pinpaths; p != NULL; p = p->next)
		if (strcmp(p->uri, uri) == 0)
			break;
	if (p == NULL && (u = malloc(sizeof(*u))) != NULL) {
		if (p11uri_parse(uri, strlen(uri), u, &e) == 0 &&
		    (p = calloc(1, sizeof(*p))) != NULL) {
			p->uri = strdup(uri);
			p->pin = strdup(u->pin_file);
			if (p->uri == NULL || p->pin == NULL) {
				free(p->uri);
				free(p->pin);
				free(p);
				p = NULL;
			} else {
				p->next = pinpaths;
				pinpaths = p;
			}
		}
		free(u);
	}
	if (p != NULL)
		r = p->pin;
	pthread_mutex_unlock(&modules_mu);
	return r;
}

/*
 * A key for <cert>: a URI naming its key by label alone picks, among the
 * keys under that label, the one <cert> certifies. Two share a label while
 * the agent replaces its key (tokenkey.c), and after a crash there: a
 * proxy given the label follows the certificate it is given.
 */
int
key_load_cert(const char *path, const struct mtls_secret *pass, X509 *cert,
    EVP_PKEY **out, struct mtls_error *err)
{
	struct p11uri *u;
	uint8_t id[128];
	size_t n;
	int by_label = 0;

	*out = NULL;
	if (cert != NULL && keystore_is_uri(path) &&
	    (u = malloc(sizeof(*u))) != NULL) {
		by_label = p11uri_parse(path, strlen(path), u, err) == 0 &&
		    u->object[0] != '\0' && u->id_len == 0;
		OPENSSL_cleanse(u, sizeof(*u));
		free(u);
		error_clear(err);
	}
	if (by_label && keystore_find_cert(path, cert, out, id, &n, err) != 0)
		return -1;
	return *out != NULL ? 0 : key_load(path, pass, out, err);
}

int
key_load(const char *path, const struct mtls_secret *pass, EVP_PKEY **out,
    struct mtls_error *err)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int rv;

	*out = NULL;
	if (keystore_is_uri(path))
		return load_uri(path, out, err);
	if (fs_read(path, MTLS_MAX_FILE, &buf, &len, err) != 0)
		return -1;
	rv = key_parse(buf, len, path, pass, out, err);
	OPENSSL_cleanse(buf, len);
	free(buf);
	return rv;
}
