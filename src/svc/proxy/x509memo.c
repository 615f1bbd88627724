/*
 * x509memo.c - libssl's certificate and session-ticket parses, memoized by
 * their exact bytes.
 *
 * Why this exists: on OpenSSL 3.0 parsing one certificate costs about as
 * much as the whole ECDHE and signature work of a handshake, because
 * d2i_X509 decodes the public key through OSSL_DECODER_CTX_new_for_pkey,
 * which walks every decoder and key manager of every provider on each call.
 * perf of the proxy: 37 % of its CPU in full mTLS handshakes went to the two
 * parses of the client's chain, and a third of a ticket-resumed handshake to
 * parsing the session out of the ticket (it holds the client certificate).
 * A sidecar sees the same few client chains all day, and OpenSSL sends no
 * new ticket on a resumption, so clients present the same ticket again:
 * the same bytes are parsed over and over. OpenSSL 3.0 has no hook to avoid
 * it (no certificate cache, no certificate compression, no raw keys).
 *
 * How: the mtls binary defines d2i_X509 and d2i_SSL_SESSION. libssl calls
 * both through its PLT, which the dynamic linker resolves to the
 * executable's definitions first. Calls that come from libssl's own code
 * (the Certificate message in either direction; the session inside a
 * ticket) are answered from small tables keyed by the exact DER bytes;
 * every other caller (libcrypto's PEM and X509_AUX readers, our own code)
 * goes straight to the real function, so no object that someone may modify
 * (trust settings, aux data) is ever shared.
 *
 * Soundness: a hit requires the same length and byte-identical DER, and
 * the input pointer is advanced by exactly the bytes the real parse
 * consumed (only whole-input parses are remembered; failures never are).
 * A certificate hit is the object the real parse of those bytes produced,
 * shared by reference as OpenSSL's own X509_STORE shares certificates (its
 * lazily computed fields are locked; libssl only reads peer certificates).
 * A session hit is a fresh SSL_SESSION_dup() of the remembered parse, since
 * libssl modifies the session it gets. Nothing here decides trust: chains
 * are verified, and validity, revocation and authorization checked on
 * every handshake and every resumption exactly as before. Session entries
 * hold resumption secrets, as a session cache does: their bytes are
 * cleansed when replaced, and SSL_SESSION_free cleanses the session.
 *
 * Bounds: direct-mapped tables (a collision replaces the entry) of
 * MEMO_SLOTS entries, inputs up to MEMO_MAX_DER bytes; a flood of distinct
 * certificates or tickets costs what it cost before (a parse) plus a store.
 */
#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proxy/x509memo.h"

#define MEMO_SLOTS 256
#define MEMO_MAX_DER 16384

struct memo_slot {
	uint64_t hash;
	long len;
	unsigned char *der;
	void *obj;
};

struct memo {
	/* the real d2i, called through a wrapper of this exact type */
	void *(*real)(void **, const unsigned char **, long);
	void (*obj_free)(void *);
	/* another reference (certificates) or a private copy (sessions,
	 * which libssl modifies): what the table keeps and what a hit gets */
	void *(*obj_share)(void *);
	pthread_mutex_t mu;
	struct memo_slot slot[MEMO_SLOTS];
	uint64_t hits, misses;
};

static X509 *(*real_d2i_x509)(X509 **, const unsigned char **, long);
static SSL_SESSION *(*real_d2i_sess)(SSL_SESSION **, const unsigned char **,
    long);

static void *
x509_parse(void **a, const unsigned char **in, long len)
{
	X509 *x = a != NULL ? *a : NULL, *r;

	r = real_d2i_x509(a != NULL ? &x : NULL, in, len);
	if (a != NULL)
		*a = x;
	return r;
}
static void *
sess_parse(void **a, const unsigned char **in, long len)
{
	SSL_SESSION *x = a != NULL ? *a : NULL, *r;

	r = real_d2i_sess(a != NULL ? &x : NULL, in, len);
	if (a != NULL)
		*a = x;
	return r;
}
static void
x509_free_v(void *o)
{
	X509_free(o);
}
static void *
x509_share(void *o)
{
	return X509_up_ref(o) ? o : NULL;
}
static void
sess_free_v(void *o)
{
	SSL_SESSION_free(o);
}
static void *
sess_share(void *o)
{
	return SSL_SESSION_dup(o);
}

static struct memo memo_cert = { x509_parse, x509_free_v, x509_share,
	PTHREAD_MUTEX_INITIALIZER, { { 0, 0, NULL, NULL } }, 0, 0 };
static struct memo memo_sess = { sess_parse, sess_free_v,
	sess_share, PTHREAD_MUTEX_INITIALIZER, { { 0, 0, NULL, NULL } }, 0,
	0 };

static pthread_once_t memo_once = PTHREAD_ONCE_INIT;
static uintptr_t ssl_lo, ssl_hi; /* libssl's executable mapping */

static int
find_libssl(struct dl_phdr_info *info, size_t size, void *arg)
{
	int i;

	(void)size;
	(void)arg;
	if (info->dlpi_name == NULL ||
	    strstr(info->dlpi_name, "/libssl.so") == NULL)
		return 0;
	for (i = 0; i < info->dlpi_phnum; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		uintptr_t lo, hi;

		if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X))
			continue;
		lo = info->dlpi_addr + ph->p_vaddr;
		hi = lo + ph->p_memsz;
		if (ssl_lo == 0 || lo < ssl_lo)
			ssl_lo = lo;
		if (hi > ssl_hi)
			ssl_hi = hi;
	}
	return 1;
}

static void
memo_init(void)
{
	*(void **)&real_d2i_x509 = dlsym(RTLD_NEXT, "d2i_X509");
	*(void **)&real_d2i_sess = dlsym(RTLD_NEXT, "d2i_SSL_SESSION");
	if (real_d2i_x509 == NULL || real_d2i_sess == NULL)
		abort(); /* libcrypto/libssl not below us: cannot link so */
	dl_iterate_phdr(find_libssl, NULL);
}

/* FNV-1a: picks the slot only; a hit also compares every byte */
static uint64_t
memo_hash(const unsigned char *p, long n)
{
	uint64_t h = 14695981039346656037ULL;
	long i;

	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 1099511628211ULL;
	return h;
}

/* Puts <o>'s shareable form under <h>/<start,len> in <m>, replacing what
 * the slot held. Best effort: out of memory only means no entry. */
static void
memo_store(struct memo *m, struct memo_slot *s, uint64_t h,
    const unsigned char *start, long len, void *o)
{
	struct memo_slot old;
	unsigned char *copy;
	void *keep;

	if ((keep = m->obj_share(o)) == NULL)
		return;
	if ((copy = malloc((size_t)len)) == NULL) {
		m->obj_free(keep);
		return;
	}
	memcpy(copy, start, (size_t)len);
	pthread_mutex_lock(&m->mu);
	old = *s;
	s->hash = h;
	s->len = len;
	s->der = copy;
	s->obj = keep;
	pthread_mutex_unlock(&m->mu);
	if (old.der != NULL)
		OPENSSL_clear_free(old.der, (size_t)old.len);
	if (old.obj != NULL)
		m->obj_free(old.obj);
}

static int
from_libssl(uintptr_t caller)
{
	pthread_once(&memo_once, memo_init);
	return caller >= ssl_lo && caller < ssl_hi;
}

/* The d2i for <m>: <pre>, when given, may produce the object for these
 * exact bytes without parsing (see rec_take). */
static void *
memo_d2i(struct memo *m, uintptr_t caller, void **a, const unsigned char **in,
    long len, void *(*pre)(const unsigned char *, long))
{
	const unsigned char *start;
	struct memo_slot *s;
	void *o = NULL;
	uint64_t h;

	if (!from_libssl(caller) || in == NULL || *in == NULL || len <= 0 ||
	    len > MEMO_MAX_DER)
		return m->real(a, in, len);
	start = *in;
	h = memo_hash(start, len);
	s = &m->slot[h % MEMO_SLOTS];
	if (pre != NULL && (o = pre(start, len)) != NULL) {
		memo_store(m, s, h, start, len, o);
		pthread_mutex_lock(&m->mu);
		m->hits++;
		pthread_mutex_unlock(&m->mu);
	} else {
		pthread_mutex_lock(&m->mu);
		if (s->obj != NULL && s->hash == h && s->len == len &&
		    memcmp(s->der, start, (size_t)len) == 0)
			o = m->obj_share(s->obj);
		if (o == NULL)
			m->misses++;
		else
			m->hits++;
		pthread_mutex_unlock(&m->mu);
		if (o == NULL) {
			if ((o = m->real(a, in, len)) != NULL &&
			    *in == start + len)
				memo_store(m, s, h, start, len, o);
			return o; /* a failure, or trailing bytes, is the
				   * caller's to judge, as before */
		}
	}
	if (a != NULL) {
		m->obj_free(*a);
		*a = o;
	}
	*in = start + len;
	return o;
}

X509 *
d2i_X509(X509 **a, const unsigned char **in, long len)
{
	return memo_d2i(&memo_cert, (uintptr_t)__builtin_return_address(0),
	    (void **)a, in, len, NULL);
}

/*
 * To make a ticket, libssl 3.0 serializes the session, parses that back
 * into a private copy, and serializes the copy (construct_stateless_ticket;
 * its only use of i2d_SSL_SESSION). The parse costs as much as the client
 * certificate's. So i2d_SSL_SESSION, called from libssl, remembers on its
 * thread the session and the bytes it wrote, and the next d2i_SSL_SESSION
 * on that thread, if it is handed exactly those bytes, answers with
 * SSL_SESSION_dup() of that session: the same serialized state, which is
 * all the caller uses (it serializes the copy and frees it). The copy it
 * serializes is never remembered, so a later parse of that ticket (a
 * resumption) is a real parse or a memo hit, never a copy carrying state
 * that is not in the ticket.
 */
struct rec {
	SSL_SESSION *sess;	/* referenced; NULL: nothing armed */
	const SSL_SESSION *our_dup;	/* the copy we answered last */
	unsigned char *buf;
	long len;
	size_t cap;
};
static pthread_key_t rec_key;
static int (*real_i2d_sess)(const SSL_SESSION *, unsigned char **);

static void
rec_clear(struct rec *r)
{
	SSL_SESSION_free(r->sess);
	r->sess = NULL;
	if (r->buf != NULL)
		OPENSSL_cleanse(r->buf, (size_t)r->len);
	r->len = 0;
}

static void
rec_free(void *p)
{
	struct rec *r = p;

	rec_clear(r);
	free(r->buf);
	free(r);
}

static void
rec_init(void)
{
	*(void **)&real_i2d_sess = dlsym(RTLD_NEXT, "i2d_SSL_SESSION");
	if (real_i2d_sess == NULL || pthread_key_create(&rec_key, rec_free))
		abort();
}
static pthread_once_t rec_once = PTHREAD_ONCE_INIT;

static void *
rec_take(const unsigned char *p, long len)
{
	struct rec *r;
	SSL_SESSION *o = NULL;

	pthread_once(&rec_once, rec_init);
	if ((r = pthread_getspecific(rec_key)) == NULL || r->sess == NULL)
		return NULL;
	if (r->len == len && memcmp(r->buf, p, (size_t)len) == 0)
		o = SSL_SESSION_dup(r->sess);
	rec_clear(r);
	r->our_dup = o;
	return o;
}

int
i2d_SSL_SESSION(const SSL_SESSION *in, unsigned char **pp)
{
	uintptr_t caller = (uintptr_t)__builtin_return_address(0);
	unsigned char *start = pp != NULL ? *pp : NULL;
	struct rec *r;
	int n;

	pthread_once(&rec_once, rec_init);
	n = real_i2d_sess(in, pp);
	if (n <= 0 || n > MEMO_MAX_DER || start == NULL || in == NULL ||
	    !from_libssl(caller))
		return n;
	if ((r = pthread_getspecific(rec_key)) == NULL) {
		if ((r = calloc(1, sizeof(*r))) == NULL ||
		    pthread_setspecific(rec_key, r) != 0) {
			free(r);
			return n;
		}
	}
	rec_clear(r);
	if (in == r->our_dup) {	/* the copy: its parse must be real */
		r->our_dup = NULL;
		return n;
	}
	if ((size_t)n > r->cap) {
		unsigned char *nb = malloc((size_t)n);

		if (nb == NULL)
			return n;
		free(r->buf);
		r->buf = nb;
		r->cap = (size_t)n;
	}
	memcpy(r->buf, start, (size_t)n);
	r->len = n;
	if (SSL_SESSION_up_ref((SSL_SESSION *)in))
		r->sess = (SSL_SESSION *)in;
	return n;
}

SSL_SESSION *
d2i_SSL_SESSION(SSL_SESSION **a, const unsigned char **in, long len)
{
	return memo_d2i(&memo_sess, (uintptr_t)__builtin_return_address(0),
	    (void **)a, in, len, rec_take);
}

void
x509memo_stats(struct x509memo_stats *st)
{
	pthread_mutex_lock(&memo_cert.mu);
	st->cert_hits = memo_cert.hits;
	st->cert_misses = memo_cert.misses;
	pthread_mutex_unlock(&memo_cert.mu);
	pthread_mutex_lock(&memo_sess.mu);
	st->session_hits = memo_sess.hits;
	st->session_misses = memo_sess.misses;
	pthread_mutex_unlock(&memo_sess.mu);
}
